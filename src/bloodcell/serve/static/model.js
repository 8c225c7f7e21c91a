// The model's facts (`GET /v1/model`): the footer sentence, the technical details and the
// guide to reading the results.

import { api } from "./api.js";
import { setUpCard } from "./card.js";
import { $, el, megabytes, percent, showError } from "./dom.js";
import { state } from "./state.js";

// Short definitions, keyed by the model's class labels (display names come from the server).
const CLASS_NOTES = {
  benign: "Hematogones: normal B-cell precursors. They can look like leukaemic blasts " +
    "but are not malignant.",
  early_pre_b: "B-ALL blasts of the early precursor (common, CD10-positive) stage.",
  pre_b: "B-ALL blasts of the pre-B stage (cytoplasmic µ heavy chain).",
  pro_b: "B-ALL blasts of the earliest, pro-B stage (CD10-negative).",
};

export async function loadModelInfo() {
  try {
    const res = await api("v1/model");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const info = await res.json();
    state.model = info;
    state.limits = info.limits;
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
    ["Engine", info.engine],
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
