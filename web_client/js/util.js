// Small DOM and formatting helpers shared by the pages.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** h("div.card", {attrs}, ...children): a tiny element builder (text is always escaped). */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Money from integer cents (the API's unit) as e.g. "$12.50". */
export function money(cents, currency = "USD") {
  if (cents === undefined || cents === null || Number.isNaN(Number(cents))) return "—";
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(Number(cents) / 100);
  } catch {
    return (Number(cents) / 100).toFixed(2);
  }
}

/** "m:ss" for a number of seconds (never negative). */
export function clock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** Milliseconds since the epoch from a server timestamp (ms or s). */
export function toMs(ts) {
  if (ts === undefined || ts === null) return null;
  const n = Number(ts);
  return n < 1e12 ? n * 1000 : n;
}

export function timeOfDay(ts) {
  const ms = toMs(ts);
  if (!ms) return "";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** Show a transient message in the page's toast region (aria-live). */
export function toast(text, kind = "info", ms = 4000) {
  let region = document.getElementById("toasts");
  if (!region) {
    region = h("div#toasts.toasts", { role: "status", "aria-live": "polite" });
    region.id = "toasts";
    document.body.append(region);
  }
  const el = h(`div.toast.${kind}`, {}, text);
  region.append(el);
  setTimeout(() => el.remove(), ms);
}

/** Human text for an error value from the API or the socket. */
export function errorText(err) {
  if (!err) return "something went wrong";
  const code = err.code ? ` (${err.code})` : "";
  return (err.message || String(err)) + code;
}
