// The model card: rendered to HTML by the server (markup in the card's text escaped there),
// read on first opening through api() so a key is sent.

import { api } from "./api.js";
import { $, el } from "./dom.js";

// The server's fragment as nodes. DOMParser runs no script, and the page's
// Content-Security-Policy would refuse one anyway.
function fragment(html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  return [...doc.body.childNodes];
}

export function setUpCard(info) {
  if (!info.model_card) return;
  const details = $("card-details");
  details.hidden = false;
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    const box = $("card-text");
    try {
      const res = await api(`${info.model_card.replace(/^\//, "")}?format=html`);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      box.replaceChildren(...fragment(await res.text()));
    } catch (err) {
      box.replaceChildren(el("p", "", "The model card could not be loaded."));
      loaded = false;
    }
  });
}
