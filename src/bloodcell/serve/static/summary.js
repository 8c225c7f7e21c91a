// The server's tables of the session's answers (`POST /v1/summary`): the totals and
// per-case summaries shown, and the two CSV downloads, in the command line's columns.

import { postJson } from "./api.js";
import { $, download, showError, stamp } from "./dom.js";
import { state } from "./state.js";

// An answered entry as the API result it came from; its path is "case/file name", as
// `bloodcell predict` writes "folder/file name" for a file found in a folder.
function summaryItem(e) {
  const filename = e.case ? `${e.case}/${e.name}` : e.name;
  if (e.status === "error") return { filename, error: e.error };
  const { heatmap_png: heatmap, ...result } = e.result; // the heatmap is not needed there
  return { ...result, filename };
}

// Ask the server to tabulate every answered entry; kept in `state.summary`. A failure leaves
// no summary (the downloads stay off) and says so, unless an error is already shown.
export async function refreshSummary() {
  const entries = state.entries;
  const results = entries.filter((e) => e.status !== "pending").map(summaryItem);
  try {
    const summary = await postJson("v1/summary", { results });
    if (state.entries === entries) state.summary = summary; // not cleared meanwhile
  } catch (err) {
    state.summary = null;
    if ($("error").hidden) showError(`Could not summarise the results: ${err.message}.`);
  }
}

export function setUpDownloads() {
  $("download-csv").addEventListener("click", () => {
    if (state.summary) download(`bloodcell-results-${stamp()}.csv`, state.summary.csv);
  });
  $("download-groups").addEventListener("click", () => {
    if (state.summary) download(`bloodcell-cases-${stamp()}.csv`, state.summary.groups_csv);
  });
}
