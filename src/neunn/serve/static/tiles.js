// One tile per cell of the sample: its image, the reviewer's controls and keys, and the badge as the review stands.
// What a tile shows of the model's call, its heatmap and the arrow keys are core-tiles.js's, shared with the case pages.
import { $ } from "./core-format.js";
import {
  callBadge, heatmapShown, heatmapsServed, moveFocus, renderCall, showHeatmap, toggleHeatmap,
} from "./core-tiles.js";
import {
  OUT_OF_DOMAIN, OUT_OF_DOMAIN_TEXT, UNIDENTIFIED, isClassified, isCorrected, isCritical, isOutOfDomain, modelCall,
  needsReview, standing,
} from "./review.js";
import { FILTERS, state } from "./state.js";

let onChange = () => {};

/** Register what happens after the reviewer changes a cell (the page re-renders its summary). */
export function onCellChange(callback) { onChange = callback; }

function classOptions(select) {
  const model = state.model;
  for (const c of model.display_order) select.append(new Option(`${c} · ${model.class_names[c]}`, c));
  select.append(new Option("Unidentified", UNIDENTIFIED));
  select.append(new Option(OUT_OF_DOMAIN_TEXT, OUT_OF_DOMAIN));
}

export function buildTile(cell) {
  const tile = $("#tile-template").content.firstElementChild.cloneNode(true);
  tile.dataset.id = cell.id;
  tile.querySelector(".name").textContent = cell.name;
  tile.querySelector(".name").title = cell.name;
  const img = tile.querySelector("img.cell");
  if (cell.url) {
    img.src = cell.url;
    img.alt = cell.name;
    img.addEventListener("error", () => { img.hidden = true; tile.querySelector(".placeholder").hidden = false; });
  } else {
    img.hidden = true;
    tile.querySelector(".placeholder").hidden = false;
  }
  if (!isClassified(cell)) {
    tile.querySelector(".prediction").innerHTML = '<span class="error-text"></span>';
    tile.querySelector(".error-text").textContent = cell.error;
    tile.querySelector(".controls").remove();
    tile.querySelector(".bar").remove();
  } else {
    renderCall(tile, cell.result, cell.result.label, state.model);
    const select = tile.querySelector(".reclassify");
    classOptions(select);
    select.addEventListener("change", () => decide(cell, select.value));
    tile.querySelector(".confirm").addEventListener("click", () => toggleConfirm(cell));
    const heat = tile.querySelector(".heat");
    heat.addEventListener("click", () => toggleHeat(cell));
    if (!cell.blob || !heatmapsServed()) heat.disabled = true;
  }
  tile.addEventListener("keydown", (event) => onTileKey(event, cell));
  updateTile(cell, tile);
  return tile;
}

function tileOf(cell) { return document.querySelector(`.tile[data-id="${cell.id}"]`); }

/** The badge: "Unreadable", the reviewer's decision, or the model's call as it waits for one. */
function badgeText(cell, critical) {
  if (!isClassified(cell)) return "Unreadable";
  if (!cell.reviewed) return callBadge(cell.result, cell.result.label, critical);
  const { label, unidentified, outOfDomain } = standing(cell);
  const bin = unidentified ? "Unidentified" : outOfDomain ? OUT_OF_DOMAIN_TEXT : label;
  return `${bin} ✓${isCorrected(cell) ? " corrected" : ""}`;
}

export function updateTile(cell, tile = tileOf(cell)) {
  if (!tile) return;
  const critical = isCritical(cell, state.model);
  tile.classList.toggle("error", !isClassified(cell));
  tile.classList.toggle("critical", critical);
  tile.classList.toggle("review", needsReview(cell));
  tile.classList.toggle("ood", isOutOfDomain(cell) && !cell.reviewed);
  tile.classList.toggle("reviewed", cell.reviewed);
  tile.querySelector(".badge").textContent = badgeText(cell, critical);
  const select = tile.querySelector(".reclassify");
  if (select) select.value = cell.reviewed ? cell.final : modelCall(cell);
  const confirm = tile.querySelector(".confirm");
  if (confirm) {
    confirm.title = cell.reviewed ? "Reviewed (click to undo)" : "Confirm the model's call (Enter)";
    confirm.textContent = cell.reviewed ? "✓ Reviewed" : "Confirm";
  }
  tile.hidden = !FILTERS[state.filter](cell);
}

function decide(cell, label) {
  cell.final = label;
  cell.reviewed = true;
  changed(cell);
}

function toggleConfirm(cell) {
  cell.reviewed = !cell.reviewed;
  cell.final = cell.reviewed ? modelCall(cell) : null;
  changed(cell);
}

/** What a heatmap of the cell explains: its class as it stands (else the model's), in the uploaded image. */
function explained(cell) {
  return { target: standing(cell).label ?? cell.result.label, image: async () => [cell.blob, cell.name] };
}

function changed(cell) {
  if (heatmapShown(cell.id)) {  // the explained class may change
    const tile = tileOf(cell);
    showHeatmap(tile, cell.id, false, explained(cell)).then(() => showHeatmap(tile, cell.id, true, explained(cell)));
  }
  updateTile(cell);
  onChange();
}

function toggleHeat(cell) { if (cell.blob) toggleHeatmap(tileOf(cell), cell.id, explained(cell)); }

function onTileKey(event, cell) {
  if (event.target.tagName === "SELECT") return;
  const order = state.model.display_order;
  if (isClassified(cell) && /^[0-9]$/.test(event.key)) {
    const n = Number(event.key);
    if (n === 0) decide(cell, UNIDENTIFIED);
    else if (n <= order.length) decide(cell, order[n - 1]);
  } else if (isClassified(cell) && event.key === "Enter" && event.target === event.currentTarget) {
    toggleConfirm(cell);
  } else if (isClassified(cell) && (event.key === "h" || event.key === "H")) {
    toggleHeat(cell);
  } else if (!moveFocus(event)) {
    return;
  }
  event.preventDefault();
}
