// The heatmap of one file's card: the class it explains, another class on request, opacity.

import { api, errorFromResponse } from "./api.js";
import { el } from "./dom.js";
import { nameOf, state } from "./state.js";

export function setUpHeatmap(entry) {
  const card = entry.card;
  const figure = card.querySelector(".heatmap-figure");
  card.querySelector(".heatmap-base").src = entry.url;
  const select = card.querySelector(".heatmap-target");
  select.replaceChildren();
  for (const label of state.labels.length ? state.labels : Object.keys(entry.result.probabilities)) {
    const option = el("option", "", nameOf(label));
    option.value = label;
    select.append(option);
  }
  select.value = entry.result.heatmap_class;
  select.addEventListener("change", () => explainAs(entry, select.value));
  const opacity = card.querySelector(".heatmap-opacity");
  opacity.addEventListener("input", () => {
    card.querySelector(".heatmap").style.opacity = String(Number(opacity.value) / 100);
  });
  showHeatmap(entry, entry.result.heatmap_class);
  figure.hidden = false;
}

function heatmapTitle(entry, label) {
  const predicted = label === entry.result.label ? " (the predicted class)" : "";
  return `Heatmap for ${nameOf(label)}${predicted}: where the model looked`;
}

function showHeatmap(entry, label) {
  const card = entry.card;
  card.querySelector(".heatmap").src = `data:image/png;base64,${entry.heatmaps[label]}`;
  card.querySelector(".heatmap-title").textContent = heatmapTitle(entry, label);
  card.querySelector(".heatmap-figure").dataset.heatmapClass = label;
}

// Another class's heatmap: asked for once (the file is sent again), then kept.
async function explainAs(entry, label) {
  if (entry.heatmaps[label]) {
    showHeatmap(entry, label);
    return;
  }
  const card = entry.card;
  const select = card.querySelector(".heatmap-target");
  const title = card.querySelector(".heatmap-title");
  select.disabled = true;
  title.textContent = `Computing the heatmap for ${nameOf(label)}…`;
  try {
    const form = new FormData();
    form.append("files", entry.file, entry.name);
    const res = await api(`v1/predict?explain_class=${encodeURIComponent(label)}`,
      { method: "POST", body: form });
    const body = await res.json();
    const result = body && Array.isArray(body.results) ? body.results[0] : null;
    if (!result || !result.heatmap_png) throw new Error(errorFromResponse(res.status, body));
    entry.heatmaps[label] = result.heatmap_png;
    if (select.value === label) showHeatmap(entry, label);
  } catch (err) {
    title.textContent = `The heatmap for ${nameOf(label)} could not be made: ${err.message}.`;
  } finally {
    select.disabled = false;
  }
}
