// One card per file: its answer (a class, no class, or why it could not be read), the
// probabilities, the white cells found and the heatmap.

import { $, el, percent, plural } from "./dom.js";
import { setUpHeatmap } from "./heatmap.js";
import { hasClass, nameOf, state } from "./state.js";

export function makeCard(entry) {
  const card = $("result-template").content.firstElementChild.cloneNode(true);
  card.id = `card-${entry.id}`;
  card.querySelector(".filename").textContent = entry.name;
  if (entry.case) {
    const c = card.querySelector(".case-name");
    c.textContent = `Case: ${entry.case}`;
    c.hidden = false;
  }
  const preview = card.querySelector(".preview");
  // A file that is not an image shows its error, not a broken picture.
  preview.addEventListener("error", () => { card.querySelector(".images").hidden = true; });
  preview.src = entry.url;
  card.querySelector(".label").textContent = "Classifying…";
  return card;
}

function drawChart(chart, result) {
  chart.replaceChildren();
  for (const [label, p] of Object.entries(result.probabilities)) {
    const top = label === result.label ? " top" : "";
    const name = el("span", `name${top}`, nameOf(label));
    const track = el("span", `track${top}`);
    track.setAttribute("role", "listitem");
    track.setAttribute("aria-label", `${name.textContent}: ${percent(p)}`);
    const fill = el("span", "fill");
    fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
    track.append(fill);
    chart.append(name, track, el("span", `value${top}`, percent(p)));
  }
}

export function fillError(entry) {
  const card = entry.card;
  card.classList.add("is-error");
  card.querySelector(".label").textContent = "Not classified";
  card.querySelector(".confidence").textContent = "";
  card.querySelector(".file-error-text").textContent = `${entry.name}: ${entry.error}.`;
  card.querySelector(".file-error").hidden = false;
  card.querySelector(".images").hidden = true;
  card.querySelector(".chart").replaceChildren();
}

// No class: out of scope, or no white cell found in the field.
function fillNoAnswer(card, result) {
  card.classList.add("is-out-of-scope");
  card.querySelector(".label").textContent = "No answer";
  card.querySelector(".confidence").textContent = "";
  card.querySelector(".out-of-scope").hidden = false;
  if (result.reason === "no white cell found") {
    card.querySelector(".oos-text").textContent = "No white blood cell was found in this " +
      "image, and the class must come from the white cells, so no class is given. Use an " +
      "image with a white cell in the field, or have it reviewed by hand.";
  } else if (result.reason === "a white cell of a type this model does not classify") {
    card.querySelector(".oos-text").textContent = "The white cell in this image does not " +
      "look like any of the four B-lymphocyte classes this model knows (it may be a " +
      "neutrophil, monocyte, eosinophil, mature lymphocyte or another cell), so no class is " +
      "given. Have it reviewed by hand.";
  } else if (result.reason) {
    const why = card.querySelector(".oos-reason");
    why.textContent = `Reason: ${result.reason}.`;
    why.hidden = false;
  }
  card.querySelector(".uncertain-flag").hidden = true;
  card.querySelector(".uncertain-text").hidden = true;
  // The probabilities of an image without a class mean nothing; they are not drawn.
  card.querySelector(".chart").replaceChildren();
}

export function fillCard(entry) {
  const card = entry.card;
  const result = entry.result;
  showCells(card, result);
  if (!hasClass(entry)) {
    fillNoAnswer(card, result);
    return;
  }
  card.querySelector(".label").textContent = result.display_name;
  card.querySelector(".confidence").textContent = `${percent(result.confidence)} confidence`;
  const set = card.querySelector(".prediction-set");
  const several = Array.isArray(result.prediction_set) && result.prediction_set.length > 1;
  set.hidden = !several;
  if (several) set.textContent = `Possible classes: ${result.note}.`;
  card.classList.toggle("is-uncertain", Boolean(result.uncertain));
  card.querySelector(".uncertain-flag").hidden = !result.uncertain;
  const why = card.querySelector(".uncertain-text");
  why.hidden = !result.uncertain;
  if (result.uncertain) {
    const threshold = state.model ? percent(state.model.uncertain_threshold) : "the threshold";
    why.textContent = `The model's confidence is below ${threshold}: treat this result as ` +
      "uncertain and have the cell reviewed by hand.";
  }
  if (result.heatmap_png) setUpHeatmap(entry);
  drawChart(card.querySelector(".chart"), result);
}

// --- cells found: boxes in image pixels, drawn in percent of the image so they scale with it ---

function showCells(card, result) {
  const caption = card.querySelector(".cells-caption");
  const boxes = Array.isArray(result.cell_boxes) ? result.cell_boxes : null;
  if (boxes === null) {
    caption.textContent = result.reason === "no white cell found"
      ? "No white cell found in this field."
      : "Uploaded image: the model classified the whole field, not one marked cell.";
    return;
  }
  if (boxes.length === 0) {
    caption.textContent = "No white cell found in this field.";
    return;
  }
  const n = typeof result.cells === "number" ? result.cells : boxes.length;
  caption.textContent = `Uploaded image: ${plural(n, "white cell")} found, outlined.`;
  const preview = card.querySelector(".preview");
  const draw = () => {
    const w = preview.naturalWidth;
    const h = preview.naturalHeight;
    if (!w || !h) return;
    for (const layer of card.querySelectorAll(".boxes")) {
      layer.replaceChildren();
      for (const box of boxes) {
        if (!Array.isArray(box) || box.length !== 4 || !box.every(Number.isFinite)) continue;
        const [top, left, bottom, right] = box;
        const div = el("div", "cell-box");
        div.style.top = `${(Math.max(0, top) / h) * 100}%`;
        div.style.left = `${(Math.max(0, left) / w) * 100}%`;
        div.style.height = `${(Math.max(0, Math.min(h, bottom) - Math.max(0, top)) / h) * 100}%`;
        div.style.width = `${(Math.max(0, Math.min(w, right) - Math.max(0, left)) / w) * 100}%`;
        layer.append(div);
      }
    }
  };
  if (preview.complete && preview.naturalWidth) draw();
  else preview.addEventListener("load", draw, { once: true });
}
