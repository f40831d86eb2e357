// One tile per cell: the image and its heatmap, the model's call, the reviewer's controls and keys.
import { api, errorOf } from "./api.js";
import {
  OUT_OF_DOMAIN, OUT_OF_DOMAIN_TEXT, UNIDENTIFIED, UNIDENTIFIED_TEXT, isClassified, isCorrected, isCritical,
  isOutOfDomain, modelCall, needsReview, standing,
} from "./review.js";
import { $, FILTERS, percent, state } from "./state.js";

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
    const r = cell.result;
    tile.querySelector(".label").textContent = `Model: ${r.label}`;
    tile.querySelector(".prob").textContent = percent(r.probability);
    tile.querySelector(".bar span").style.width = percent(r.probability);
    for (const t of r.top) {
      const li = document.createElement("li");
      li.title = state.model.class_names[t.label] ?? t.label;
      li.append(Object.assign(document.createElement("span"), { textContent: t.label }),
                Object.assign(document.createElement("span"), { textContent: percent(t.probability) }));
      tile.querySelector(".top3").append(li);
    }
    const select = tile.querySelector(".reclassify");
    classOptions(select);
    select.addEventListener("change", () => decide(cell, select.value));
    tile.querySelector(".confirm").addEventListener("click", () => toggleConfirm(cell));
    const heat = tile.querySelector(".heat");
    heat.addEventListener("click", () => toggleHeatmap(cell));
    if (!cell.blob || !state.heatmaps) heat.disabled = true;
  }
  tile.addEventListener("keydown", (event) => onTileKey(event, cell));
  updateTile(cell, tile);
  return tile;
}

function tileOf(cell) { return document.querySelector(`.tile[data-id="${cell.id}"]`); }

export function updateTile(cell, tile = tileOf(cell)) {
  if (!tile) return;
  const critical = isCritical(cell, state.model);
  const { label, unidentified, outOfDomain } = isClassified(cell) ? standing(cell) : {};
  tile.classList.toggle("error", !isClassified(cell));
  tile.classList.toggle("critical", critical);
  tile.classList.toggle("review", needsReview(cell));
  tile.classList.toggle("ood", isOutOfDomain(cell) && !cell.reviewed);
  tile.classList.toggle("reviewed", cell.reviewed);
  const badge = tile.querySelector(".badge");
  const bin = unidentified ? "Unidentified" : outOfDomain ? OUT_OF_DOMAIN_TEXT : label;
  if (!isClassified(cell)) badge.textContent = "Unreadable";
  else if (cell.reviewed) badge.textContent = `${bin} ✓${isCorrected(cell) ? " corrected" : ""}`;
  else if (outOfDomain) {
    badge.textContent = critical ? `⚠ Possible ${label} — ${OUT_OF_DOMAIN_TEXT.toLowerCase()}` : OUT_OF_DOMAIN_TEXT;
    if (cell.result.out_of_scope) badge.textContent += ` (looks like: ${cell.result.cell_type})`;
  }
  else if (unidentified) {
    badge.textContent = critical ? `⚠ Possible ${label} — review` : UNIDENTIFIED_TEXT;
    if (cell.result.pale) badge.textContent += " (pale cytoplasm)";
  }
  else badge.textContent = (critical ? "⚠ " : "") + label;
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

function changed(cell) {
  if (cell.heatOn) showHeatmap(cell, false).then(() => showHeatmap(cell, true)); // the explained class may change
  updateTile(cell);
  onChange();
}

async function showHeatmap(cell, on) {
  const tile = tileOf(cell);
  const overlay = tile.querySelector(".overlay");
  const button = tile.querySelector(".heat");
  cell.heatOn = on;
  button.setAttribute("aria-pressed", String(on));
  if (!on) { overlay.hidden = true; return; }
  const { label } = standing(cell);
  const target = label ?? cell.result.label;
  if (!cell.heat[target]) {
    button.textContent = "…";
    const form = new FormData();
    form.append("file", cell.blob, cell.name);
    try {
      const response = await api(`/api/v1/heatmap?target=${encodeURIComponent(target)}`, { method: "POST", body: form });
      if (response.status === 501) { state.heatmaps = false; button.disabled = true; }
      if (!response.ok) throw new Error(await errorOf(response));
      cell.heat[target] = URL.createObjectURL(await response.blob());
    } catch (error) {
      button.title = error.message;
      cell.heatOn = false;
      button.setAttribute("aria-pressed", "false");
      return;
    } finally {
      button.textContent = "Heatmap";
    }
  }
  overlay.src = cell.heat[target];
  overlay.alt = `Grad-CAM heatmap for ${target}`;
  overlay.hidden = !cell.heatOn;
}

function toggleHeatmap(cell) { if (cell.blob) showHeatmap(cell, !cell.heatOn); }

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
    toggleHeatmap(cell);
  } else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
    const tiles = [...document.querySelectorAll(".tile:not([hidden])")];
    const next = tiles[tiles.indexOf(event.currentTarget) + (event.key === "ArrowRight" ? 1 : -1)];
    if (next) next.focus();
  } else {
    return;
  }
  event.preventDefault();
}
