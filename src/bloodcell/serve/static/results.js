// The session's results: a sortable table of every file, the counts and the per-case table.
// Counts and case summaries are the server's (`summary.js`), computed by the command line's
// own code; this module only lays them out.

import { $, el, percent } from "./dom.js";
import { hasClass, nameOf, state } from "./state.js";

function classText(e) {
  if (e.status === "pending") return "Classifying…";
  if (e.status === "error") return "Not classified";
  return hasClass(e) ? e.result.display_name : "No class";
}

function flagText(e) {
  if (e.status === "error") return `Error: ${e.error}`;
  if (e.status !== "done") return "";
  if (!hasClass(e)) return `Out of scope: ${e.result.reason || "unlike the training images"}`;
  return e.result.uncertain ? "Uncertain: review by hand" : "";
}

function setText(e) {
  const set = e.status === "done" && e.result.prediction_set;
  return Array.isArray(set) ? set.map(nameOf).join(" or ") : "";
}

function confidenceOf(e) {
  return hasClass(e) && typeof e.result.confidence === "number" ? e.result.confidence : -1;
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
    if (e.status === "done" && e.result.uncertain) tr.classList.add("row-uncertain");
    if (e.status === "done" && !hasClass(e)) tr.classList.add("row-no-answer");
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

// The totals of `bloodcell predict` over the answered files (none yet: zeros).
function renderCounts() {
  const totals = state.summary ? state.summary.totals : null;
  const count = (key) => (totals ? totals[key] : 0);
  const items = [
    ...state.labels.map((lb) => [nameOf(lb), totals ? totals.counts[lb] || 0 : 0, `count-${lb}`]),
    ["No class (out of scope)", count("n_out_of_scope"), "count-no-answer"],
    ["Not classified (error)", count("n_errors"), "count-errors"],
    ["Uncertain", count("n_uncertain"), "count-uncertain"],
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

// The per-folder summaries of `predict --group-by-folder`, a case being the folder; shown once
// any file has a case name.
function renderGroups() {
  const named = state.entries.some((e) => e.case);
  const groups = named && state.summary ? state.summary.groups : [];
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

export function renderBatch() {
  $("batch").hidden = state.entries.length === 0;
  renderCounts();
  renderTable();
  renderGroups();
  // The downloads are the server's CSV of every answer: not while some are still coming.
  const ready = Boolean(state.summary) && !state.entries.some((e) => e.status === "pending");
  $("download-csv").disabled = !ready;
  $("download-groups").disabled = !ready;
}

export function setUpTable() {
  for (const th of $("batch-table").tHead.rows[0].cells) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.key;
      // Confidence sorts highest first on the first click; text columns A to Z.
      const first = key === "confidence" ? -1 : 1;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : first };
      renderTable();
    });
  }
}
