// Uploads: files chosen or dropped become entries, sent in requests the server takes; every
// file gets its own answer.

import { api, errorFromResponse } from "./api.js";
import { fillCard, fillError, makeCard } from "./answer.js";
import { $, megabytes, plural, setStatus, showError } from "./dom.js";
import { renderBatch } from "./results.js";
import { state } from "./state.js";
import { refreshSummary } from "./summary.js";

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
    // The counts and case table come from the server: asked for before "answered" is said.
    await refreshSummary();
  } finally {
    state.busy = false;
    $("file-input").value = "";
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const failed = entries.filter((e) => e.status === "error").length;
    renderBatch();
    setStatus(`${plural(entries.length, "file")} answered in ${seconds} s: ` +
      `${entries.length - failed} classified` +
      (failed ? `, ${failed} could not be read.` : "."));
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

export function clearResults() {
  if (state.busy) {
    showError("Please wait for the current images to finish.");
    return;
  }
  if (!window.confirm(`Clear all ${plural(state.entries.length, "result")}?`)) return;
  for (const e of state.entries) URL.revokeObjectURL(e.url);
  state.entries = [];
  state.summary = null;
  $("results").replaceChildren();
  showError("");
  setStatus("Results cleared.");
  renderBatch();
}

export function setUpDropZone() {
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
