// Small DOM and wording helpers shared by every module of the page. Every text from the
// server or a file is set with textContent, never parsed as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

export function percent(p) {
  return `${(p * 100).toFixed(1)}%`;
}

export function megabytes(n) {
  return `${(n / 1e6).toFixed(n < 1e6 ? 2 : 0)} MB`;
}

export function plural(n, word, many) {
  return `${n} ${n === 1 ? word : (many || `${word}s`)}`;
}

export function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

export function setStatus(message) {
  $("status").textContent = message;
}

// A file name stamp: 20240317-0942.
export function stamp() {
  const d = new Date();
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${two(d.getMonth() + 1)}${two(d.getDate())}-` +
    `${two(d.getHours())}${two(d.getMinutes())}`;
}

// Save `text` as a file: a click on a link to a blob, in the click's own turn so that the
// browser counts it as the user's download.
export function download(name, text, type = "text/csv;charset=utf-8") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}
