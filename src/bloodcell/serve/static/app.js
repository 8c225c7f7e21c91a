// bloodcell web page: upload smear images, show class, confidence, probabilities and heatmap.
// Plain JS, no build step. Every text from the server is set with textContent, never as HTML.
"use strict";

const state = { model: null, displayNames: {}, limits: null, busy: false, keyWanted: null };

const $ = (id) => document.getElementById(id);

// The API key, when the server wants one: asked for once, kept for this tab's session.
const KEY_ITEM = "bloodcell.apiKey";

// Show the key form; resolves when a key is entered. Callers waiting at once share one form.
function askForKey(message) {
  $("key-message").textContent = message;
  $("key-form").hidden = false;
  $("key-input").focus();
  if (!state.keyWanted) {
    state.keyWanted = new Promise((resolve) => { state.keyEntered = resolve; });
  }
  return state.keyWanted;
}

function setUpKeyForm() {
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_ITEM, key);
    $("key-input").value = "";
    $("key-form").hidden = true;
    const entered = state.keyEntered;
    state.keyWanted = null;
    entered(key);
  });
}

// fetch() for the /v1 API: sends the stored key, and on 401 asks for one and tries again.
async function api(path, options = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_ITEM);
    const headers = new Headers(options.headers || {});
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const res = await fetch(path, { ...options, headers });
    if (res.status !== 401) return res;
    sessionStorage.removeItem(KEY_ITEM);
    setStatus("");
    await askForKey(key
      ? "The server did not accept that key. Check it and enter it again."
      : "This server needs an API key. Enter it to continue.");
  }
}

function percent(p) {
  return `${(p * 100).toFixed(1)}%`;
}

function megabytes(n) {
  return `${(n / 1e6).toFixed(n < 1e6 ? 2 : 0)} MB`;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

async function loadModelInfo() {
  try {
    const res = await api("v1/model");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const info = await res.json();
    state.model = info;
    state.limits = info.limits;
    for (const c of info.classes) state.displayNames[c.label] = c.display_name;
    // metrics.json is keyed by split ({"test": {"accuracy": ...}}) once the model is evaluated.
    const test = (info.metrics && (info.metrics.test || info.metrics)) || {};
    const acc = typeof test.accuracy === "number"
      ? ` · test accuracy ${percent(test.accuracy)}${test.n ? ` (n=${test.n})` : ""}` : "";
    $("model-info").textContent =
      `Model: ${info.name} (${info.architecture}), version ${info.version}, ` +
      `running on ${info.backend}${acc}.`;
    showAbout(info, test);
    $("limits-hint").textContent =
      `JPEG, PNG, BMP, TIFF or WebP · up to ${info.limits.max_files} images, ` +
      `${megabytes(info.limits.max_upload_bytes)} in total.`;
  } catch (err) {
    $("model-info").textContent = "Could not load model information.";
    showError("The server did not answer. Check that it is running, then reload the page.");
  }
}

// The footer's short model card: test accuracy with its interval, the refusal rule, the warning.
function showAbout(info, test) {
  if (!info.model_card) return;
  const ci = test.ci95 && test.ci95.accuracy;
  $("about-accuracy").textContent = typeof test.accuracy === "number"
    ? `Test accuracy ${percent(test.accuracy)}` +
      (ci ? ` (95% CI ${percent(ci[0])}–${percent(ci[1])})` : "") +
      (test.n ? ` on ${test.n} images from the same laboratory as the training data.` : ".")
    : "Test accuracy: not measured.";
  $("about-scope").textContent = typeof info.ood_threshold === "number"
    ? `Images scoring above ${info.ood_threshold.toFixed(4)} on the out-of-scope detector ` +
      "(unlike the training smears) get no class."
    : "This model has no out-of-scope detector: it answers for every image.";
  // The card comes through api() so that a server with an API key gets the key.
  $("card-link").addEventListener("click", async (e) => {
    e.preventDefault();
    const res = await api(info.model_card.replace(/^\//, ""));
    const box = $("card-text");
    box.textContent = res.ok ? await res.text() : "The model card could not be loaded.";
    box.hidden = false;
  });
  $("about").hidden = false;
}

// Checks the browser can make before uploading, so the user hears about them at once.
function checkFiles(files) {
  if (files.length === 0) return "No file was chosen.";
  const limits = state.limits;
  if (!limits) return null;
  if (files.length > limits.max_files) {
    return `Too many files: ${files.length} chosen, at most ${limits.max_files} at a time.`;
  }
  const total = files.reduce((sum, f) => sum + f.size, 0);
  if (total > limits.max_upload_bytes) {
    return `The files are too large together (${megabytes(total)}); ` +
      `the limit is ${megabytes(limits.max_upload_bytes)}.`;
  }
  const empty = files.find((f) => f.size === 0);
  if (empty) return `${empty.name} is empty.`;
  return null;
}

function errorFromResponse(status, body) {
  if (body && typeof body.detail === "string") return `Could not classify: ${body.detail}.`;
  if (status === 413) return "The upload is too large for this server.";
  if (status >= 500) return "The server ran into a problem. Please try again.";
  return `The server refused the request (HTTP ${status}).`;
}

function makeCard(file) {
  const card = $("result-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".filename").textContent = file.name;
  card.querySelector(".preview").src = URL.createObjectURL(file);
  card.querySelector(".label").textContent = "Classifying…";
  return card;
}

function drawChart(chart, result) {
  chart.replaceChildren();
  for (const [label, p] of Object.entries(result.probabilities)) {
    const top = label === result.label ? " top" : "";
    const name = document.createElement("span");
    name.className = `name${top}`;
    name.textContent = state.displayNames[label] || label;
    const track = document.createElement("span");
    track.className = `track${top}`;
    track.setAttribute("role", "listitem");
    track.setAttribute("aria-label", `${name.textContent}: ${percent(p)}`);
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = `value${top}`;
    value.textContent = percent(p);
    chart.append(name, track, value);
  }
}

function fillOutOfScope(card, result) {
  card.classList.add("is-out-of-scope");
  card.querySelector(".label").textContent = "No answer";
  card.querySelector(".confidence").textContent = "";
  card.querySelector(".out-of-scope").hidden = false;
  card.querySelector(".uncertain-flag").hidden = true;
  card.querySelector(".uncertain-text").hidden = true;
  // The probabilities of an out-of-scope image mean nothing; they are not drawn.
  card.querySelector(".chart").replaceChildren();
  card.querySelector(".timing").textContent = `Answered in ${Math.round(result.timing_ms)} ms.`;
}

function fillCard(card, result) {
  if (result.out_of_scope) {
    fillOutOfScope(card, result);
    return;
  }
  card.querySelector(".label").textContent = result.display_name;
  card.querySelector(".confidence").textContent = `${percent(result.confidence)} confidence`;
  const set = card.querySelector(".prediction-set");
  const several = Array.isArray(result.prediction_set) && result.prediction_set.length > 1;
  set.hidden = !several;
  if (several) set.textContent = `Possible classes: ${result.note}.`;
  card.classList.toggle("is-uncertain", result.uncertain);
  card.querySelector(".uncertain-flag").hidden = !result.uncertain;
  const why = card.querySelector(".uncertain-text");
  why.hidden = !result.uncertain;
  if (result.uncertain) {
    const threshold = state.model ? percent(state.model.uncertain_threshold) : "the threshold";
    why.textContent = `The model's confidence is below ${threshold}: treat this result as ` +
      "uncertain and have the cell reviewed by hand.";
  }
  if (result.heatmap_png) {
    card.querySelector(".heatmap").src = `data:image/png;base64,${result.heatmap_png}`;
    card.querySelector(".heatmap-figure").hidden = false;
  }
  drawChart(card.querySelector(".chart"), result);
  card.querySelector(".timing").textContent = `Answered in ${Math.round(result.timing_ms)} ms.`;
}

async function classify(fileList) {
  const files = Array.from(fileList);
  showError("");
  const problem = checkFiles(files);
  if (problem) {
    showError(problem);
    return;
  }
  if (state.busy) {
    showError("Please wait for the current images to finish.");
    return;
  }
  state.busy = true;
  const results = $("results");
  results.replaceChildren();
  const cards = files.map(makeCard);
  results.append(...cards);
  setStatus(`Classifying ${files.length} image${files.length > 1 ? "s" : ""}…`);

  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const explain = !state.model || state.model.explain_available;
  try {
    const res = await api(`v1/predict?explain=${explain}`, { method: "POST", body: form });
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok || !body || !Array.isArray(body.results)) {
      results.replaceChildren();
      showError(errorFromResponse(res.status, body));
      setStatus("");
      return;
    }
    body.results.forEach((r, i) => fillCard(cards[i], r));
    setStatus("Done.");
  } catch (err) {
    results.replaceChildren();
    showError("Could not reach the server. Check that it is running and try again.");
    setStatus("");
  } finally {
    state.busy = false;
    $("file-input").value = "";
  }
}

function setUpDropZone() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => classify(input.files));
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.remove("dragging"); });
  }
  zone.addEventListener("drop", (e) => classify(e.dataTransfer.files));
  // A file dropped outside the zone would otherwise make the browser leave the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

setUpKeyForm();
setUpDropZone();
loadModelInfo();
