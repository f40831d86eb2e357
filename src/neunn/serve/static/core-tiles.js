// One cell's result on a tile, for both pages: the model's call (class, confidence bar, three likeliest classes), the
// badge of a cell still waiting for a person (its bin and what the screens said), the Grad-CAM heatmap laid over the
// image, the spots the vacuole finder located, and ←/→ between tiles. It reads the per-cell record the API answers —
// a one-sample result and a stored cell alike (neunn/inference/cell_record.py: probability, probabilities,
// needs_review, out_of_domain, and each screen's call under screens.<name>) — and keys a tile's state by the cell's id.
import { api, errorOf, LoggedOut } from "./core-api.js";
import { className, percent } from "./core-format.js";
import { OUT_OF_DOMAIN_TEXT, UNIDENTIFIED_TEXT } from "./review.js";

/** The model's call on ``tile``: its class ``label``, the confidence bar and the three likeliest classes. */
export function renderCall(tile, cell, label, model) {
  tile.querySelector(".label").textContent = `Model: ${label}`;
  tile.querySelector(".label").title = className(model, label);
  tile.querySelector(".prob").textContent = percent(cell.probability);
  tile.querySelector(".bar span").style.width = percent(cell.probability);  // CSSOM, allowed by the page's CSP
  const top = Object.entries(cell.probabilities || {}).sort((a, b) => b[1] - a[1]).slice(0, 3);
  tile.querySelector(".top3").replaceChildren(...top.map(([c, p]) => {
    const li = document.createElement("li");
    li.title = className(model, c) || c;
    li.append(Object.assign(document.createElement("span"), { textContent: c }),
              Object.assign(document.createElement("span"), { textContent: percent(p) }));
    return li;
  }));
}

/** The badge of a cell no one has decided yet: outside the model's experience (which wins over the review bin) or in
 *  the review bin, with what the screens add, else its class; ``label`` is the model's class, ``critical`` whether it
 *  is a critical finding (the cell is then a possible one, whichever bin it waits in). */
export function callBadge(cell, label, critical) {
  if (cell.out_of_domain) {
    const text = critical ? `⚠ Possible ${label} — ${OUT_OF_DOMAIN_TEXT.toLowerCase()}` : OUT_OF_DOMAIN_TEXT;
    const gate = cell.screens?.cell_type_gate;
    return gate?.flagged ? `${text} (looks like: ${gate.value})` : text;
  }
  if (cell.needs_review) {
    const text = critical ? `⚠ Possible ${label} — review` : UNIDENTIFIED_TEXT;
    return cell.screens?.pallor_screen?.flagged ? `${text} (pale cytoplasm)` : text;
  }
  return (critical ? "⚠ " : "") + label;
}

// ---- heatmaps ------------------------------------------------------------------------------------------------------
const heatmaps = new Map();  // cell id → {on, urls: {class: blob URL}}
let served = true;           // false once the server said it has no heatmaps (501)

export const heatmapShown = (id) => Boolean(heatmaps.get(id)?.on);
/** Whether the server may make heatmaps (it has not answered 501 yet). */
export const heatmapsServed = () => served;

/** Show (or hide) over ``tile``'s image why the model would call cell ``id`` ``target``: fetched once per cell and
 *  class; ``image()`` gives the [blob, file name] of the cell's image to explain. */
export async function showHeatmap(tile, id, on, { target, image }) {
  if (!tile) return;
  const overlay = tile.querySelector(".overlay");
  const button = tile.querySelector(".heat");
  const entry = heatmaps.get(id) || { on: false, urls: {} };
  heatmaps.set(id, entry);
  entry.on = on;
  button.setAttribute("aria-pressed", String(on));
  if (!on) { overlay.hidden = true; return; }
  if (!entry.urls[target]) {
    button.textContent = "…";
    try {
      const [blob, name] = await image();
      const form = new FormData();
      form.append("file", blob, name);
      const response = await api(`/api/v1/heatmap?target=${encodeURIComponent(target)}`, { method: "POST", body: form });
      if (response.status === 501) { served = false; button.disabled = true; }
      if (!response.ok) throw new Error(await errorOf(response));
      entry.urls[target] = URL.createObjectURL(await response.blob());
    } catch (error) {
      if (error instanceof LoggedOut) return;
      button.title = error.message;
      entry.on = false;
      button.setAttribute("aria-pressed", "false");
      return;
    } finally {
      button.textContent = "Heatmap";
    }
  }
  overlay.src = entry.urls[target];
  overlay.alt = `Grad-CAM heatmap for ${target}`;
  overlay.hidden = !entry.on;
}

export function toggleHeatmap(tile, id, explained) { return showHeatmap(tile, id, !heatmapShown(id), explained); }

// ---- the vacuole finder's marks ------------------------------------------------------------------------------------
const marked = new Map();  // cell id → whether the finder's spots are drawn (default: when the finder flags the cell)
const outlined = new Map();  // cell id → whether the cell's and its nucleus's outlines are drawn (default: no)

/** The spots the vacuole finder located on the cell ({y, x, radius, ...} in image pixels), its call, and the outlines
 *  of the cell and its nucleus it found them in ({cell: [[x, y], ...], nucleus: [...]}, image pixels). */
function findings(cell) {
  const call = cell.screens?.vacuole_finder;
  return call ? { flagged: Boolean(call.flagged), spots: call.detail?.spots ?? [], n: call.detail?.n_spots ?? 0,
                  outline: call.detail?.outline ?? null } : null;
}

function polygon(svg, points, kind) {
  const shape = document.createElementNS(svg.namespaceURI, "polygon");
  shape.setAttribute("points", points.map(([x, y]) => `${x},${y}`).join(" "));
  shape.setAttribute("class", kind);
  return shape;
}

/** Draw (or hide) the finder's spots over ``tile``'s image of cell ``id``, and say how many there are (on a tile with
 *  the marks layer: svg.marks and .finding-note). */
export function drawMarks(tile, id, cell) {
  const svg = tile.querySelector("svg.marks");
  const note = tile.querySelector(".finding-note");
  if (!svg || !note) return;
  const found = findings(cell);
  if (!found) { svg.toggleAttribute("hidden", true); note.hidden = true; return; }
  const img = tile.querySelector("img.cell");
  const on = marked.get(id) ?? found.flagged;
  const regions = Boolean(outlined.get(id) && found.outline);
  note.hidden = !found.n;
  note.textContent = `${found.n} pale spot${found.n === 1 ? "" : "s"}${found.flagged ? " · possible vacuoles" : ""}`;
  const hide = !(on || regions) || !img.naturalWidth;
  svg.toggleAttribute("hidden", hide);  // an SVG element has no `hidden` property, only the attribute
  if (hide) return;
  svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
  svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
  const shapes = regions ? [polygon(svg, found.outline.cell, "outline-cell"),
                             polygon(svg, found.outline.nucleus, "outline-nucleus")] : [];
  svg.replaceChildren(...shapes, ...(on ? found.spots : []).map((s) => {
    const circle = document.createElementNS(svg.namespaceURI, "circle");  // the page's own SVG namespace
    circle.setAttribute("cx", s.x); circle.setAttribute("cy", s.y); circle.setAttribute("r", s.radius + 2);
    return circle;
  }));
}

/** R on a tile: draw (or hide) the outlines of the cell and its nucleus, where the finder looked for vacuoles. */
export function toggleOutline(tile, id, cell) {
  const found = findings(cell);
  if (!found?.outline || !tile) return;
  outlined.set(id, !outlined.get(id));
  drawMarks(tile, id, cell);
}

export function toggleMarks(tile, id, cell) {
  const found = findings(cell);
  if (!found || !tile) return;
  marked.set(id, !(marked.get(id) ?? found.flagged));
  drawMarks(tile, id, cell);
}

/** Forget every cell's heatmaps (their blob URLs too) and marks: the page shows other cells now. */
export function forgetCells() {
  for (const entry of heatmaps.values()) Object.values(entry.urls).forEach((url) => URL.revokeObjectURL(url));
  heatmaps.clear();
  marked.clear();
  outlined.clear();
}

// ---- keys ----------------------------------------------------------------------------------------------------------
/** ←/→ on a tile: the focus moves to the previous or next tile shown; whether the key was one of these. */
export function moveFocus(event) {
  if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return false;
  const tiles = [...document.querySelectorAll("#grid .tile:not([hidden])")];
  const next = tiles[tiles.indexOf(event.currentTarget) + (event.key === "ArrowRight" ? 1 : -1)];
  if (next) next.focus();
  return true;
}
