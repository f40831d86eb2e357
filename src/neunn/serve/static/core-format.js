// What both pages write the same way: percentages, times, a class's long name, lists of facts; and the DOM look-ups.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
export const percent = (p) => `${Math.round(p * 100)}%`;

/** "2026-11-27 09:08" in the browser's time zone, from the API's ISO time. */
export function when(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  const pad = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}`;
}

/** The long name of class ``label`` in ``model``'s card, or "" when it has none beyond its code. */
export function className(model, label) {
  const name = model?.class_names?.[label];
  return name && name !== label ? name : "";
}

/** Fill the <dl> ``list`` with [term, value] pairs. */
export function facts(list, pairs) {
  list.replaceChildren(...pairs.flatMap(([k, v]) => [
    Object.assign(document.createElement("dt"), { textContent: k }),
    Object.assign(document.createElement("dd"), { textContent: v })]));
}

const ISO_TIME = /\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})/g;

/** ``text`` (a server's message) with each ISO time in it written as ``when`` writes it: local and readable. */
export function readableTimes(text) {
  return typeof text === "string" ? text.replace(ISO_TIME, (iso) => when(iso)) : text;
}
