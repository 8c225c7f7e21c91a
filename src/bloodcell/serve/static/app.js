// bloodcell web page: upload smear images; every file gets its own answer (a class, an
// out-of-scope answer or its error), kept in a sortable table until the user clears it, with
// a CSV in the columns of `bloodcell predict --format csv` (the server sends the column list).
// Plain JS, no build step. Every text from the server or a file is set with textContent.
"use strict";

const state = {
  model: null,
  labels: [],
  displayNames: {},
  limits: null,
  csv: null,
  busy: false,
  keyWanted: null,
  keyEntered: null,
  entries: [], // one per file, in the order added: {id, name, case, file, url, status, ...}
  nextId: 1,
  sort: { key: "index", dir: 1 },
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// Short definitions, keyed by the model's class labels (display names come from the server).
const CLASS_NOTES = {
  benign: "Hematogones: normal B-cell precursors. They can look like leukaemic blasts " +
    "but are not malignant.",
  early_pre_b: "B-ALL blasts of the early precursor (common, CD10-positive) stage.",
  pre_b: "B-ALL blasts of the pre-B stage (cytoplasmic µ heavy chain).",
  pro_b: "B-ALL blasts of the earliest, pro-B stage (CD10-negative).",
};

// --- the API key: asked for once, kept for this tab's session ---------------------------------

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

// --- small helpers ----------------------------------------------------------------------------

function percent(p) {
  return `${(p * 100).toFixed(1)}%`;
}

function megabytes(n) {
  return `${(n / 1e6).toFixed(n < 1e6 ? 2 : 0)} MB`;
}

function plural(n, word, many) {
  return `${n} ${n === 1 ? word : (many || `${word}s`)}`;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

function nameOf(label) {
  return state.displayNames[label] || label;
}

// --- model facts: footer, technical details, the guide ----------------------------------------

async function loadModelInfo() {
  try {
    const res = await api("v1/model");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const info = await res.json();
    state.model = info;
    state.limits = info.limits;
    state.csv = info.csv;
    state.labels = info.classes.map((c) => c.label);
    for (const c of info.classes) state.displayNames[c.label] = c.display_name;
    // metrics.json is keyed by split ({"test": {"accuracy": ...}}) once the model is evaluated.
    const test = (info.metrics && (info.metrics.test || info.metrics)) || {};
    $("model-info").textContent = describeModel(info, test);
    fillTechnical(info);
    fillGuide(info);
    setUpCard(info);
    $("limits-hint").textContent = "JPEG, PNG, BMP, TIFF or WebP, each under " +
      `${megabytes(info.limits.max_upload_bytes)}; choose as many as you like.`;
    document.body.dataset.model = "ready";
  } catch (err) {
    $("model-info").textContent = "Could not load model information.";
    showError("The server did not answer. Check that it is running, then reload the page.");
    document.body.dataset.model = "failed";
  }
}

// One sentence a haematologist can use: what was measured, on what; no engine words.
function describeModel(info, test) {
  const names = info.classes.map((c) => c.display_name).join(", ");
  let text = `Sorts an image of a stained peripheral blood smear into ${names}.`;
  if (typeof test.accuracy === "number") {
    const ci = test.ci95 && test.ci95.accuracy;
    text += ` Test accuracy ${percent(test.accuracy)}` +
      (ci ? ` (95% CI ${percent(ci[0])}–${percent(ci[1])})` : "") +
      (test.n ? ` on ${test.n} images` : "") +
      " from the same laboratory as the training images; other laboratories may see less.";
  } else {
    text += " Its accuracy has not been measured.";
  }
  return text;
}

function fillTechnical(info) {
  const rows = [
    ["Model", info.name],
    ["Architecture", info.architecture],
    ["Version (weights sha256)", info.version],
    ["Engine", info.backend],
    ["bloodcell version", info.bloodcell_version || "unknown"],
    ["Input size", `${info.image_size} px`],
    ["Temperature (calibration)", String(info.temperature)],
    ["Uncertain below confidence", percent(info.uncertain_threshold)],
    ["Out-of-scope score threshold",
      typeof info.ood_threshold === "number" ? info.ood_threshold.toFixed(4) : "no detector"],
    ["Prediction-set coverage",
      typeof info.conformal_coverage === "number" ? percent(info.conformal_coverage) : "no sets"],
    ["Heatmaps (Grad-CAM)", info.explain_available ? "available" : "not available"],
    ["Per request", `at most ${info.limits.max_files} images and ` +
      `${megabytes(info.limits.max_upload_bytes)}; at most ` +
      `${info.limits.max_pixels.toLocaleString("en")} pixels per image`],
  ];
  const list = $("tech-list");
  list.replaceChildren();
  for (const [term, value] of rows) list.append(el("dt", "", term), el("dd", "", value));
}

function fillGuide(info) {
  $("guide-confidence").textContent = "The model's calibrated probability that its answer is " +
    "right, for images like its training images: of the answers given with 90% confidence, " +
    "roughly 9 in 10 were right in testing. It is not the probability for this patient. Below " +
    `${percent(info.uncertain_threshold)} the answer is marked “Uncertain — review by hand”.`;
  $("guide-set").textContent = typeof info.conformal_coverage === "number"
    ? "Every class the image still fits. For images like the training ones the true class is " +
      `in the set ${percent(info.conformal_coverage)} of the time. One class: the model can ` +
      "tell; two or more: the image cannot settle it, and another test must (for hematogones " +
      "against Early Pre-B, flow cytometry)."
    : "This model gives no prediction sets.";
  $("guide-scope").textContent = typeof info.ood_threshold === "number"
    ? "The image is unlike the training smears (another magnification, stain, scanner, cell " +
      "type, or not a smear), so no class is given. Smears from other laboratories are often " +
      "refused this way."
    : "This model has no out-of-scope detector, so an image unlike its training smears " +
      "(another magnification, stain, scanner) still gets a class: judge for yourself " +
      "whether an image fits.";
  const notes = $("class-notes");
  notes.replaceChildren();
  for (const c of info.classes) {
    notes.append(el("dt", "", c.display_name), el("dd", "", CLASS_NOTES[c.label] || ""));
  }
}

// The model card is read on first opening, through api() so a key is sent, and shown as text.
function setUpCard(info) {
  if (!info.model_card) return;
  const details = $("card-details");
  details.hidden = false;
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    const box = $("card-text");
    try {
      const res = await api(info.model_card.replace(/^\//, ""));
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      renderMarkdown(await res.text(), box);
    } catch (err) {
      box.replaceChildren(el("p", "", "The model card could not be loaded."));
      loaded = false;
    }
  });
}

// --- a tiny markdown renderer for the model card: elements and textContent only, no HTML ------

function stripFrontMatter(lines) {
  if (lines.length && lines[0].replace(/^\uFEFF/, "").trim() === "---") {
    const end = lines.findIndex((line, i) => i > 0 && line.trim() === "---");
    if (end > 0) return lines.slice(end + 1);
  }
  return lines;
}

// **bold**, `code` and [text](link) (kept as text: the card's links are not followed).
function appendInline(parent, text) {
  const pattern = /\*\*([^*]+)\*\*|`([^`]+)`|\[([^\]]+)\]\(([^)\s]*)\)/g;
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > last) parent.append(text.slice(last, m.index));
    if (m[1] !== undefined) parent.append(el("strong", "", m[1]));
    else if (m[2] !== undefined) parent.append(el("code", "", m[2]));
    else parent.append(`${m[3]}${m[4] ? ` (${m[4]})` : ""}`);
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

function tableCells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

function renderMarkdown(text, into) {
  const lines = stripFrontMatter(text.split(/\r?\n/));
  const out = [];
  const isTable = (line) => /^\s*\|/.test(line);
  const isItem = (line) => /^\s*([-*]|\d+\.)\s+/.test(line);
  const isHeading = (line) => /^#{1,6}\s/.test(line);
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }
    if (isHeading(line)) {
      const m = /^(#{1,6})\s+(.*)$/.exec(line);
      const h = el(`h${Math.min(6, m[1].length + 2)}`);
      appendInline(h, m[2]);
      out.push(h);
      i += 1;
    } else if (/^```/.test(line)) {
      const code = [];
      for (i += 1; i < lines.length && !/^```/.test(lines[i]); i += 1) code.push(lines[i]);
      out.push(el("pre", "", code.join("\n")));
      i += 1;
    } else if (isTable(line)) {
      const table = el("table", "card-table");
      const body = el("tbody");
      let first = true;
      for (; i < lines.length && isTable(lines[i]); i += 1) {
        const cells = tableCells(lines[i]);
        if (cells.every((c) => /^:?-{2,}:?$/.test(c))) continue; // the |---| line
        const tr = el("tr");
        for (const cell of cells) {
          const td = el(first ? "th" : "td");
          appendInline(td, cell);
          tr.append(td);
        }
        (first ? table.appendChild(el("thead")) : body).append(tr);
        first = false;
      }
      table.append(body);
      const wrap = el("div", "table-wrap");
      wrap.append(table);
      out.push(wrap);
    } else if (isItem(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const list = el(ordered ? "ol" : "ul");
      let item = null;
      for (; i < lines.length && lines[i].trim(); i += 1) {
        if (isItem(lines[i])) {
          item = el("li");
          list.append(item);
          appendInline(item, lines[i].replace(/^\s*([-*]|\d+\.)\s+/, ""));
        } else {
          appendInline(item, ` ${lines[i].trim()}`);
        }
      }
      out.push(list);
    } else {
      const words = [];
      for (; i < lines.length && lines[i].trim() && !isHeading(lines[i]) && !isTable(lines[i]) &&
        !isItem(lines[i]) && !/^```/.test(lines[i]); i += 1) {
        words.push(lines[i].trim());
      }
      const p = el("p");
      appendInline(p, words.join(" "));
      out.push(p);
    }
  }
  into.replaceChildren(...out);
}

// --- uploads: split into requests the server takes, one entry per file -----------------------

// Multipart headers per file, over the file's bytes (the server counts the whole body).
const PART_OVERHEAD = 512;

function addEntry(file, caseName) {
  const entry = {
    id: state.nextId,
    index: state.nextId,
    name: file.name || `upload-${state.nextId}`,
    case: caseName,
    file,
    url: URL.createObjectURL(file),
    status: "pending",
    result: null,
    error: null,
    heatmaps: {},
    card: null,
  };
  state.nextId += 1;
  entry.card = makeCard(entry);
  state.entries.push(entry);
  return entry;
}

// Requests of at most max_files files and max_upload_bytes; a file too large alone is
// answered here, without sending it.
function planRequests(entries) {
  const limits = state.limits || { max_files: 16, max_upload_bytes: 10e6 };
  const requests = [];
  let current = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = entry.file.size + PART_OVERHEAD + entry.name.length;
    if (size > limits.max_upload_bytes) {
      failEntry(entry, `too large for this server (${megabytes(entry.file.size)}; ` +
        `at most ${megabytes(limits.max_upload_bytes)} per image)`);
      continue;
    }
    if (current.length >= limits.max_files || bytes + size > limits.max_upload_bytes) {
      requests.push(current);
      current = [];
      bytes = 0;
    }
    current.push(entry);
    bytes += size;
  }
  if (current.length) requests.push(current);
  return requests;
}

function errorFromResponse(status, body) {
  if (body && typeof body.detail === "string") return body.detail;
  if (status === 413) return "the upload is too large for this server";
  if (status >= 500) return "the server ran into a problem; please try again";
  return `the server refused the request (HTTP ${status})`;
}

async function sendRequest(entries) {
  const form = new FormData();
  for (const e of entries) form.append("files", e.file, e.name);
  const explain = !state.model || state.model.explain_available;
  let res;
  try {
    res = await api(`v1/predict?explain=${explain}`, { method: "POST", body: form });
  } catch (err) {
    const message = "could not reach the server; check that it is running and try again";
    for (const e of entries) failEntry(e, message);
    showError(`Could not classify: ${message}.`);
    return;
  }
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  // Each file has its own answer (200: all classified, 207: some, 400/413: none).
  if (body && Array.isArray(body.results) && body.results.length === entries.length) {
    body.results.forEach((r, i) => finishEntry(entries[i], { ...r, engine: body.engine }));
    return;
  }
  const message = errorFromResponse(res.status, body);
  for (const e of entries) failEntry(e, message);
  showError(`Could not classify: ${message}.`);
}

async function classify(fileList) {
  const files = Array.from(fileList);
  showError("");
  if (files.length === 0) {
    showError("No file was chosen.");
    return;
  }
  if (state.busy) {
    showError("Please wait for the current images to finish.");
    return;
  }
  state.busy = true;
  const caseName = $("case-input").value.trim();
  const entries = files.map((f) => addEntry(f, caseName));
  $("results").append(...entries.map((e) => e.card));
  const requests = planRequests(entries);
  renderBatch();
  const started = performance.now();
  try {
    for (const [i, chunk] of requests.entries()) {
      setStatus(`Classifying ${plural(chunk.length, "image")}` +
        (requests.length > 1 ? ` (part ${i + 1} of ${requests.length})…` : "…"));
      await sendRequest(chunk);
      renderBatch();
    }
  } finally {
    state.busy = false;
    $("file-input").value = "";
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const failed = entries.filter((e) => e.status === "error").length;
    setStatus(`${plural(entries.length, "file")} answered in ${seconds} s: ` +
      `${entries.length - failed} classified` +
      (failed ? `, ${failed} could not be read.` : "."));
    renderBatch();
  }
}

function finishEntry(entry, result) {
  if (result.error) {
    failEntry(entry, result.error);
    return;
  }
  entry.status = "done";
  entry.result = result;
  if (result.heatmap_png && result.heatmap_class) {
    entry.heatmaps[result.heatmap_class] = result.heatmap_png;
  }
  fillCard(entry);
}

function failEntry(entry, message) {
  entry.status = "error";
  entry.error = message;
  fillError(entry);
}

function clearResults() {
  if (state.busy) {
    showError("Please wait for the current images to finish.");
    return;
  }
  if (!window.confirm(`Clear all ${plural(state.entries.length, "result")}?`)) return;
  for (const e of state.entries) URL.revokeObjectURL(e.url);
  state.entries = [];
  $("results").replaceChildren();
  showError("");
  setStatus("Results cleared.");
  renderBatch();
}

// --- one card per file --------------------------------------------------------------------------

function makeCard(entry) {
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

function fillError(entry) {
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

function fillCard(entry) {
  const card = entry.card;
  const result = entry.result;
  showCells(card, result);
  if (result.out_of_scope || result.label === null || result.label === undefined) {
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

// --- the heatmap: class it explains, another class on request, opacity, legend ------------------

function setUpHeatmap(entry) {
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

// --- the batch table, counts and per-case summary -----------------------------------------------

function classText(e) {
  if (e.status === "pending") return "Classifying…";
  if (e.status === "error") return "Not classified";
  return e.result.display_name || "No class";
}

function flagText(e) {
  if (e.status === "error") return `Error: ${e.error}`;
  if (e.status !== "done") return "";
  const r = e.result;
  if (r.out_of_scope || r.label === null || r.label === undefined) {
    const why = r.reason || (r.out_of_scope ? "unlike the training images" : "no class");
    return `Out of scope: ${why}`;
  }
  return r.uncertain ? "Uncertain: review by hand" : "";
}

function setText(e) {
  const set = e.status === "done" && e.result.prediction_set;
  return Array.isArray(set) ? set.map(nameOf).join(" or ") : "";
}

function confidenceOf(e) {
  return e.status === "done" && typeof e.result.confidence === "number" ? e.result.confidence : -1;
}

const SORT_KEYS = {
  index: (e) => e.index,
  file: (e) => e.name,
  case: (e) => e.case,
  class: (e) => classText(e),
  confidence: confidenceOf,
  flag: (e) => flagText(e),
  set: (e) => setText(e),
};

function sortedEntries() {
  const key = SORT_KEYS[state.sort.key] || SORT_KEYS.index;
  const dir = state.sort.dir;
  return [...state.entries].sort((a, b) => {
    const x = key(a);
    const y = key(b);
    const order = typeof x === "number" && typeof y === "number"
      ? x - y
      : String(x).localeCompare(String(y), undefined, { numeric: true, sensitivity: "base" });
    return dir * order || a.index - b.index;
  });
}

function cell(label, text) {
  const td = el("td", "", text);
  td.dataset.label = label;
  return td;
}

function renderTable() {
  const body = $("batch-table").tBodies[0];
  body.replaceChildren();
  for (const e of sortedEntries()) {
    const tr = el("tr", `row-${e.status}`);
    tr.dataset.id = String(e.id);
    const link = el("a", "", e.name);
    link.href = `#card-${e.id}`;
    const file = cell("File", "");
    file.append(link);
    const conf = confidenceOf(e);
    const r = e.result;
    if (r && r.uncertain) tr.classList.add("row-uncertain");
    if (r && (r.out_of_scope || r.label === null)) tr.classList.add("row-no-answer");
    tr.append(
      cell("#", String(e.index)),
      file,
      cell("Case", e.case || "—"),
      cell("Class", classText(e)),
      cell("Confidence", conf >= 0 ? percent(conf) : "—"),
      cell("Review", flagText(e) || "—"),
      cell("Prediction set", setText(e) || "—"),
    );
    body.append(tr);
  }
  for (const th of $("batch-table").tHead.rows[0].cells) {
    const active = th.dataset.key === state.sort.key;
    th.setAttribute("aria-sort", active ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
  }
}

function renderCounts() {
  const done = state.entries.filter((e) => e.status === "done");
  const counts = Object.fromEntries(state.labels.map((lb) => [lb, 0]));
  let noAnswer = 0;
  let uncertain = 0;
  for (const e of done) {
    if (e.result.label === null || e.result.label === undefined) noAnswer += 1;
    else counts[e.result.label] = (counts[e.result.label] || 0) + 1;
    if (e.result.uncertain) uncertain += 1;
  }
  const errors = state.entries.filter((e) => e.status === "error").length;
  const items = [
    ...Object.entries(counts).map(([lb, n]) => [nameOf(lb), n, `count-${lb}`]),
    ["No class (out of scope)", noAnswer, "count-no-answer"],
    ["Not classified (error)", errors, "count-errors"],
    ["Uncertain", uncertain, "count-uncertain"],
    ["Files", state.entries.length, "count-files"],
  ];
  const list = $("counts");
  list.replaceChildren();
  for (const [name, n, id] of items) {
    const li = el("li", "");
    li.dataset.count = id;
    li.append(el("span", "count-name", name), el("span", "count-value", String(n)));
    list.append(li);
  }
}

// The per-folder summary of `predict --group-by-folder` (grouping.FolderSummary), a case
// being the folder: images, errors, uncertain, out of scope, counts, mean probabilities.
function groupSummaries() {
  const groups = new Map();
  for (const e of state.entries) {
    if (e.status === "pending") continue;
    const folder = e.case || ".";
    if (!groups.has(folder)) {
      groups.set(folder, {
        folder, n_images: 0, n_errors: 0, n_uncertain: 0, n_out_of_scope: 0,
        counts: Object.fromEntries(state.labels.map((lb) => [lb, 0])),
        sums: Object.fromEntries(state.labels.map((lb) => [lb, 0])),
      });
    }
    const g = groups.get(folder);
    if (e.status === "error") {
      g.n_errors += 1;
      continue;
    }
    const r = e.result;
    g.n_images += 1;
    g.n_uncertain += r.uncertain ? 1 : 0;
    g.n_out_of_scope += r.out_of_scope ? 1 : 0;
    if (r.label !== null && r.label !== undefined && r.label in g.counts) g.counts[r.label] += 1;
    for (const lb of state.labels) g.sums[lb] += (r.probabilities || {})[lb] || 0;
  }
  const out = [...groups.values()].sort((a, b) =>
    (a.folder < b.folder ? -1 : a.folder > b.folder ? 1 : 0));
  for (const g of out) {
    g.mean_probabilities = g.n_images
      ? Object.fromEntries(state.labels.map((lb) => [lb, g.sums[lb] / g.n_images]))
      : null;
    delete g.sums;
  }
  return out;
}

function renderGroups() {
  const named = state.entries.some((e) => e.case);
  const groups = named ? groupSummaries() : [];
  $("groups").hidden = groups.length === 0;
  $("download-groups").hidden = groups.length === 0;
  if (!groups.length) return;
  const headings = ["Case", "Images", "Not read", "Uncertain", "Out of scope",
    ...state.labels.map((lb) => nameOf(lb))];
  const head = $("group-table").tHead.rows[0];
  head.replaceChildren(...headings.map((h) => {
    const th = el("th", "", h);
    th.scope = "col";
    return th;
  }));
  const body = $("group-table").tBodies[0];
  body.replaceChildren();
  for (const g of groups) {
    const tr = el("tr");
    tr.append(
      cell("Case", g.folder === "." ? "(no case name)" : g.folder),
      cell("Images", String(g.n_images)),
      cell("Not read", String(g.n_errors)),
      cell("Uncertain", String(g.n_uncertain)),
      cell("Out of scope", String(g.n_out_of_scope)),
      ...state.labels.map((lb) => cell(nameOf(lb), `${g.counts[lb]}` +
        (g.mean_probabilities ? ` (mean ${percent(g.mean_probabilities[lb])})` : ""))),
    );
    body.append(tr);
  }
}

function renderBatch() {
  $("batch").hidden = state.entries.length === 0;
  renderCounts();
  renderTable();
  renderGroups();
  const pending = state.entries.some((e) => e.status === "pending");
  $("download-csv").disabled = pending;
  $("download-groups").disabled = pending;
}

function setUpTable() {
  for (const th of $("batch-table").tHead.rows[0].cells) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.key;
      // Confidence sorts highest first on the first click; text columns A to Z.
      const first = key === "confidence" ? -1 : 1;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : first };
      renderTable();
    });
  }
  $("download-csv").addEventListener("click", () => {
    download(`bloodcell-results-${stamp()}.csv`, predictionsCsv());
  });
  $("download-groups").addEventListener("click", () => {
    download(`bloodcell-cases-${stamp()}.csv`, groupsCsv());
  });
  $("print").addEventListener("click", () => window.print());
  $("clear").addEventListener("click", clearResults);
  window.addEventListener("beforeprint", () => {
    const m = state.model;
    $("print-meta").textContent = `Printed ${new Date().toLocaleString()}` +
      (m ? ` · model ${m.name}, version ${m.version}` : "") +
      " · research use only, not a diagnosis.";
  });
}

// --- CSV: the columns the server lists (those of `bloodcell predict --format csv`) --------------

function csvValue(kind, v) {
  if (v === null || v === undefined) return "";
  if (kind === "float") return Number(v).toFixed(6);
  if (kind === "bool") return v ? "true" : "false";
  if (kind === "joined") return Array.isArray(v) ? v.join("|") : String(v);
  return String(v);
}

function csvLine(values) {
  return values.map((s) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s)).join(",");
}

function columnValue(column, source) {
  const v = source[column.key];
  if (column.label === null || column.label === undefined) return csvValue(column.kind, v);
  return csvValue(column.kind, v ? v[column.label] : null);
}

// A file's path: "case/name", as `predict` writes "folder/name" for a file found in a folder.
function entryPath(e) {
  return e.case ? `${e.case}/${e.name}` : e.name;
}

function predictionsCsv() {
  const columns = state.csv.columns;
  const lines = [csvLine(columns.map((c) => c.name))];
  for (const e of state.entries) {
    if (e.status === "pending") continue;
    // An error row says only which file and why (as `predict` writes it).
    const source = e.status === "error"
      ? { filename: entryPath(e), error: e.error }
      : { ...e.result, filename: entryPath(e) };
    lines.push(csvLine(columns.map((c) => columnValue(c, source))));
  }
  return `${lines.join("\n")}\n`;
}

function groupsCsv() {
  const columns = state.csv.group_columns;
  const lines = [csvLine(columns.map((c) => c.name))];
  for (const g of groupSummaries()) lines.push(csvLine(columns.map((c) => columnValue(c, g))));
  return `${lines.join("\n")}\n`;
}

function stamp() {
  const d = new Date();
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${two(d.getMonth() + 1)}${two(d.getDate())}-` +
    `${two(d.getHours())}${two(d.getMinutes())}`;
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const a = el("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

// --- the drop zone --------------------------------------------------------------------------------

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
setUpTable();
loadModelInfo();
