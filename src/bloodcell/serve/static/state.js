// What the page knows: the model's facts, and one entry per file added this session.

export const state = {
  model: null,
  labels: [],
  displayNames: {},
  limits: null,
  busy: false,
  entries: [], // one per file, in the order added: {id, name, case, file, url, status, ...}
  nextId: 1,
  sort: { key: "index", dir: 1 },
  // The server's totals, per-case summaries and CSV texts of the answered entries
  // (`POST /v1/summary`); null until asked for, and after the results are cleared.
  summary: null,
};

export function nameOf(label) {
  return state.displayNames[label] || label;
}

// The one test of whether a file got a class: it was read and not refused (out of scope or
// no white cell found). The server gives a refused image no label.
export function hasClass(entry) {
  return entry.status === "done" && entry.result.label !== null &&
    entry.result.label !== undefined;
}
