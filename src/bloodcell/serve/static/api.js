// The /v1 API: fetch() with the API key, which is asked for once and kept for this tab.

import { $, setStatus } from "./dom.js";

const KEY_ITEM = "bloodcell.apiKey";

let keyWanted = null; // a promise of the key while the form is shown
let keyEntered = null; // resolves it

// Show the key form; resolves when a key is entered. Callers waiting at once share one form.
function askForKey(message) {
  $("key-message").textContent = message;
  $("key-form").hidden = false;
  $("key-input").focus();
  if (!keyWanted) {
    keyWanted = new Promise((resolve) => { keyEntered = resolve; });
  }
  return keyWanted;
}

export function setUpKeyForm() {
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_ITEM, key);
    $("key-input").value = "";
    $("key-form").hidden = true;
    const entered = keyEntered;
    keyWanted = null;
    entered(key);
  });
}

// fetch() for the /v1 API: sends the stored key, and on 401 asks for one and tries again.
export async function api(path, options = {}) {
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

// The server's own sentence (`detail`) when it sent one, else a plain one for the status.
export function errorFromResponse(status, body) {
  if (body && typeof body.detail === "string") return body.detail;
  if (status === 413) return "the upload is too large for this server";
  if (status >= 500) return "the server ran into a problem; please try again";
  return `the server refused the request (HTTP ${status})`;
}

// POST a JSON body; the parsed answer, or an Error with the server's sentence.
export async function postJson(path, body) {
  const res = await api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let answer = null;
  try { answer = await res.json(); } catch (e) { answer = null; }
  if (!res.ok) throw new Error(errorFromResponse(res.status, answer));
  return answer;
}
