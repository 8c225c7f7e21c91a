// bloodcell web page: upload smear images; every file gets its own answer (a class, an
// out-of-scope answer or its error), kept in a sortable table until the user clears it, with
// the server's counts, per-case summaries and CSV downloads of them.
// ES modules, no build step; each module has one job:
//   api.js      the /v1 API and its key         model.js    the model's facts and the guide
//   card.js     the model card (server HTML)    upload.js   files in, answers back
//   answer.js   one card per file               heatmap.js  a card's heatmap
//   results.js  the table, counts, case table   summary.js  the server's tables and CSVs
//   state.js    what the page knows             dom.js      small DOM helpers

import { setUpKeyForm } from "./api.js";
import { $ } from "./dom.js";
import { loadModelInfo } from "./model.js";
import { setUpTable } from "./results.js";
import { state } from "./state.js";
import { setUpDownloads } from "./summary.js";
import { clearResults, setUpDropZone } from "./upload.js";

function setUpActions() {
  $("print").addEventListener("click", () => window.print());
  $("clear").addEventListener("click", clearResults);
  window.addEventListener("beforeprint", () => {
    const m = state.model;
    $("print-meta").textContent = `Printed ${new Date().toLocaleString()}` +
      (m ? ` · model ${m.name}, version ${m.version}` : "") +
      " · research use only, not a diagnosis.";
  });
}

setUpKeyForm();
setUpDropZone();
setUpTable();
setUpDownloads();
setUpActions();
loadModelInfo();
