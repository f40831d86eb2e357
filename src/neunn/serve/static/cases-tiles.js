// One tile per stored cell: its image (and heatmap), the model's call, the label as it stands, and the reviewer's
// controls. Every decision is a PUT at once; the tile says "Saved" only once the server has answered 200, and a
// conflict (someone changed the cell first) shows the server's message and the cell as the server has it now.
// What a tile shows of the model's call, its heatmap, the vacuole marks and the arrow keys are core-tiles.js's, shared
// with the one-sample page. A decision by key or menu moves the focus on to the next cell that needs one; a wrong
// upload is voided with a reason (kept, struck, out of every count).
import { session } from "./cases-api.js";
import { api, bodyOf, errorOf, LoggedOut } from "./core-api.js";
import { $, className, readableTimes, when } from "./core-format.js";
import {
  drawMarks, forgetCells, heatmapShown, moveFocus, renderCall, showHeatmap, toggleHeatmap, toggleMarks, toggleOutline,
} from "./core-tiles.js";
import {
  DECISION_KEYS, FILTERS, OTHER_CELL_TYPE_DECISION, OTHER_CELL_TYPE_DECISION_TEXT, UNIDENTIFIED_DECISION,
  UNIDENTIFIED_DECISION_TEXT, badgeText, inReviewBin, isCorrected, isCriticalCell, isDecided, isLocked, isOutOfDomain,
  isSigned, isUndecided, isVoidCase, isVoided, isWaiting, labelText, state,
} from "./cases-state.js";

let onChange = () => {};
/** Register what happens after a cell changed (the page re-renders its summary, filters, sign-off and trail). */
export function onCellChange(callback) { onChange = callback; }

const pending = new Map();  // cell id → the label being saved
const images = new Map();   // cell id → Blob of its image (for heatmaps)

/** Whether this reviewer may amend the open (signed) case: its signer, or an admin. */
export function canAmend() {
  return Boolean(state.caseRow) && (session.role === "admin" || session.user === state.caseRow.signed_by);
}

export function tileOf(id) { return document.querySelector(`#grid .tile[data-cell-id="${id}"]`); }

function classOptions(select) {
  const model = state.model;
  const order = model.display_order || model.classes;
  order.forEach((c, i) => {
    const name = className(model, c);
    select.append(new Option(`${i < 9 ? `${i + 1} · ` : ""}${c}${name ? ` · ${name}` : ""}`, c));
  });
  select.append(new Option(`0 · ${UNIDENTIFIED_DECISION_TEXT}`, UNIDENTIFIED_DECISION),
                new Option(`O · ${OTHER_CELL_TYPE_DECISION_TEXT}`, OTHER_CELL_TYPE_DECISION));
}

export function buildTile(cell) {
  const tile = $("#case-tile-template").content.firstElementChild.cloneNode(true);
  const id = cell.id;
  tile.dataset.cellId = id;
  tile.querySelector(".name").textContent = `#${cell.position + 1} · ${cell.name}`;
  tile.querySelector(".name").title = cell.name;
  const img = tile.querySelector("img.cell");
  img.src = cell.image_url;
  img.alt = cell.name;
  img.addEventListener("error", () => { img.alt = `${cell.name} (the image could not be loaded)`; });
  img.addEventListener("load", () => drawMarks(tile, id, state.cells.get(id)));
  const current = () => state.cells.get(id);
  renderCall(tile, cell, cell.predicted_label, state.model);
  const select = tile.querySelector(".reclassify");
  classOptions(select);
  select.addEventListener("change", () => choose(current(), select.value, { advance: true }));
  tile.querySelector(".confirm").addEventListener("click", () => confirmCell(current()));
  tile.querySelector(".heat").addEventListener("click", () => toggleHeat(current()));
  const form = tile.querySelector("form.amend");
  const reason = form.querySelector(".amend-reason");
  reason.addEventListener("input", () => { form.querySelector(".amend-save").disabled = !reason.value.trim(); });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = reason.value.trim();
    if (text && form.dataset.label) save(current(), form.dataset.label, text);
  });
  form.querySelector(".amend-cancel").addEventListener("click", () => closeAmend(id, true));
  form.addEventListener("keydown", (event) => { if (event.key === "Escape") closeAmend(id, true); });
  wireVoidForm(tile, current);
  tile.addEventListener("keydown", (event) => onTileKey(event, current()));
  updateTile(cell, tile);
  return tile;
}

function saveNote(cell) {
  if (state.busy.has(cell.id)) return { state: "saving", text: "Saving…" };
  const note = state.notes.get(cell.id);
  if (note && note.state !== "saved") return note;
  if (isVoided(cell)) return { state: "voided", text: "" };
  if (isDecided(cell)) return { state: "saved", text: "Saved ✓" };
  if (isWaiting(cell)) return { state: "waiting", text: "Needs a decision" };
  return { state: "idle", text: isLocked() ? "" : "Not decided yet" };
}

export function updateTile(cell, tile = tileOf(cell.id)) {
  if (!tile) return;
  const busy = state.busy.has(cell.id);
  const signed = isSigned();
  const voided = isVoided(cell);
  const frozen = voided || isVoidCase();  // nothing is decided on a voided cell, nor in a voided case
  tile.dataset.label = cell.label;
  tile.dataset.decided = String(isDecided(cell));
  tile.dataset.voided = String(voided);
  tile.classList.toggle("voided", voided);
  tile.classList.toggle("critical", isCriticalCell(cell));
  tile.classList.toggle("review", inReviewBin(cell));
  tile.classList.toggle("ood", isOutOfDomain(cell));
  tile.classList.toggle("reviewed", isDecided(cell));
  tile.classList.toggle("waiting", isWaiting(cell));
  tile.classList.toggle("must-decide", state.mustDecide.has(cell.id) && isWaiting(cell));
  tile.classList.toggle("busy", busy);
  tile.querySelector(".badge").textContent = badgeText(cell);
  const current = tile.querySelector(".current");
  current.textContent = "";
  current.append(Object.assign(document.createElement("strong"), { textContent: labelText(cell.label) }));
  const name = className(state.model, cell.label);
  if (name) current.append(` · ${name}`);
  const amended = signed && cell.decided_at && state.caseRow.signed_at && cell.decided_at > state.caseRow.signed_at;
  const verb = amended ? "Amended" : isCorrected(cell) ? "Reclassified" : "Confirmed";
  tile.querySelector(".decision").textContent = isDecided(cell)
    ? `${verb} by ${cell.decided_by ?? "?"} · ${when(cell.decided_at)}` : "";
  const voidNote = tile.querySelector(".void-note");
  voidNote.hidden = !voided;
  voidNote.textContent = voided
    ? `Voided by ${cell.voided_by ?? "?"} · ${when(cell.voided_at)}: ${cell.void_reason ?? ""} (not counted)` : "";
  const select = tile.querySelector(".reclassify");
  const amending = !tile.querySelector("form.amend").hidden;
  if (!amending) select.value = pending.get(cell.id) ?? cell.label;
  select.disabled = busy || frozen || (signed && !canAmend());
  select.title = voided ? "This cell was voided: it takes no decision."
    : signed && !canAmend() ? "This case is signed: only its signer or an admin may amend it." : "";
  const voidOpen = tile.querySelector(".void-open");
  voidOpen.hidden = isLocked() || voided;
  voidOpen.disabled = busy;
  if (voidOpen.hidden) tile.querySelector("form.void-form").hidden = true;
  const confirm = tile.querySelector(".confirm");
  confirm.hidden = isLocked() || voided;
  confirm.disabled = busy || isDecided(cell);
  confirm.textContent = isDecided(cell) ? "✓ Decided" : "Confirm";
  confirm.title = isDecided(cell) ? "Decided: choose another class to change it" : "Confirm the model's call (Enter)";
  const note = saveNote(cell);
  const line = tile.querySelector(".save-state");
  line.dataset.state = note.state;
  line.textContent = note.text;
  drawMarks(tile, cell.id, cell);
  tile.hidden = !FILTERS[state.filter](cell);
}

/** The reviewer picked a class: saved at once in an open case; in a signed one, an amendment that needs a reason.
 *  With ``advance`` (a key or the menu) the focus moves on to the next cell that needs a decision. */
function choose(cell, label, { advance = false } = {}) {
  if (!cell || state.busy.has(cell.id)) return;
  if (isVoided(cell) || isVoidCase()) { updateTile(cell); return; }
  if (isSigned()) {
    if (!canAmend()) { updateTile(cell); return; }
    if (label === cell.label) { closeAmend(cell.id, true); return; }
    openAmend(cell, label);
    return;
  }
  if (isDecided(cell) && label === cell.final_label) return;
  const saving = save(cell, label);
  if (advance) focusNextToDecide(cell.id);
  return saving;
}

export function confirmCell(cell, { advance = false } = {}) {
  if (!cell || isLocked() || isVoided(cell) || isDecided(cell) || state.busy.has(cell.id)) return Promise.resolve();
  const saving = save(cell, cell.predicted_label);
  if (advance) focusNextToDecide(cell.id);
  return saving;
}

/** Move the focus from cell ``id``'s tile to the next shown one that still needs a decision: a flagged cell first,
 *  else any undecided one (after it in the grid, then from the top); it stays where it is when none is left. */
function focusNextToDecide(id) {
  const tiles = [...document.querySelectorAll("#grid .tile:not([hidden])")];
  const at = tiles.indexOf(tileOf(id));
  const order = [...tiles.slice(at + 1), ...tiles.slice(0, Math.max(at, 0))];
  const open = (test) => order.find((t) => {
    const c = state.cells.get(Number(t.dataset.cellId));
    return c && c.id !== id && !state.busy.has(c.id) && test(c);
  });
  const next = open(isWaiting) ?? open(isUndecided);
  if (next) next.focus();
}

function openAmend(cell, label) {
  const tile = tileOf(cell.id);
  const form = tile.querySelector("form.amend");
  form.dataset.label = label;
  form.hidden = false;
  tile.querySelector(".reclassify").value = label;
  form.querySelector(".amend-save").textContent = `Amend to ${label}`;
  form.querySelector(".amend-save").disabled = !form.querySelector(".amend-reason").value.trim();
  form.querySelector(".amend-reason").focus();
}

function closeAmend(id, revert) {
  const tile = tileOf(id);
  if (!tile) return;
  const form = tile.querySelector("form.amend");
  form.hidden = true;
  delete form.dataset.label;
  form.querySelector(".amend-reason").value = "";
  if (revert) updateTile(state.cells.get(id), tile);
}

/** PUT the decision; the tile shows the server's answer (and only then "Saved"). */
export async function save(cell, label, reason) {
  const id = cell.id, caseId = state.caseId;
  if (state.busy.has(id)) return;
  state.busy.add(id);
  pending.set(id, label);
  state.notes.delete(id);
  updateTile(cell);
  let refresh = false;
  try {
    const json = { label, version: cell.version, ...(reason ? { reason } : {}) };
    const response = await api(`/api/v1/cases/${caseId}/cells/${id}/decision`, { method: "PUT", json });
    const body = await bodyOf(response);
    if (state.caseId !== caseId) return;
    if (response.ok) {
      state.cells.set(id, body);
      state.notes.set(id, { state: "saved", text: "Saved ✓" });
      state.mustDecide.delete(id);
      closeAmend(id, false);
    } else if (response.status === 409 && body.cell) {
      state.cells.set(id, body.cell);  // never overwrite silently: show what the server has now
      state.notes.set(id, { state: "conflict",
                            text: `${readableTimes(body.error)} The tile now shows the current label.` });
      closeAmend(id, false);
    } else {
      state.notes.set(id, { state: "error", text: readableTimes(body.error) || `Not saved (HTTP ${response.status}).` });
      refresh = response.status === 403 || response.status === 409;  // e.g. the case was signed meanwhile
    }
  } catch (error) {
    if (error instanceof LoggedOut) return;
    state.notes.set(id, { state: "error", text: `Not saved: ${error.message}` });
  } finally {
    state.busy.delete(id);
    pending.delete(id);
  }
  if (state.caseId !== caseId) return;
  const now = state.cells.get(id);
  const tile = tileOf(id);
  const focused = tile && (tile.contains(document.activeElement) || document.activeElement === document.body);
  if (heatmapShown(id)) showHeatmap(tileOf(id), id, true, explained(now));  // the explained class may have changed
  updateTile(now);
  onChange({ refresh });
  if (focused && tile.hidden) nextTile(tile)?.focus();  // decided out of the filter: on to the next cell
}

// ---- voiding a wrong upload ----------------------------------------------------------------------------------------
function wireVoidForm(tile, current) {
  const form = tile.querySelector("form.void-form");
  const reason = form.querySelector(".void-reason");
  const close = () => { form.hidden = true; reason.value = ""; form.querySelector(".void-save").disabled = true; };
  tile.querySelector(".void-open").addEventListener("click", () => {
    form.hidden = false;
    reason.focus();
  });
  reason.addEventListener("input", () => { form.querySelector(".void-save").disabled = !reason.value.trim(); });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = reason.value.trim();
    if (text) voidCell(current(), text).then((done) => { if (done) { close(); tile.focus(); } });
  });
  form.querySelector(".void-cancel").addEventListener("click", () => { close(); tile.focus(); });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { close(); tile.focus(); event.stopPropagation(); }
  });
}

/** POST the void of a wrongly uploaded cell with its reason; whether the server voided it. */
async function voidCell(cell, reason) {
  const id = cell?.id, caseId = state.caseId;
  if (!cell || state.busy.has(id)) return false;
  state.busy.add(id);
  state.notes.delete(id);
  updateTile(cell);
  let done = false;
  try {
    const response = await api(`/api/v1/cases/${caseId}/cells/${id}/void`,
                               { method: "POST", json: { reason, version: cell.version } });
    const body = await bodyOf(response);
    if (state.caseId !== caseId) return false;
    if (response.ok) {
      state.cells.set(id, body);
      state.mustDecide.delete(id);
      done = true;
    } else {
      if (response.status === 409 && body.cell) state.cells.set(id, body.cell);
      state.notes.set(id, { state: "error", text: `Not voided: ${readableTimes(body.error) || `HTTP ${response.status}`}` });
    }
  } catch (error) {
    if (error instanceof LoggedOut) return false;
    state.notes.set(id, { state: "error", text: `Not voided: ${error.message}` });
  } finally {
    state.busy.delete(id);
  }
  if (state.caseId !== caseId) return false;
  updateTile(state.cells.get(id));
  onChange({});
  return done;
}

/** The visible tile after ``tile`` (or else before it), for keyboard review. */
function nextTile(tile) {
  const tiles = [...document.querySelectorAll("#grid .tile")];
  const at = tiles.indexOf(tile);
  return tiles.slice(at + 1).find((t) => !t.hidden) ?? tiles.slice(0, at).reverse().find((t) => !t.hidden);
}

// ---- heatmaps ------------------------------------------------------------------------------------------------------
/** The cell's image (fetched once), for its heatmap. */
async function imageOf(cell) {
  if (!images.has(cell.id)) {
    const image = await api(cell.image_url);
    if (!image.ok) throw new Error(await errorOf(image));
    images.set(cell.id, await image.blob());
  }
  return [images.get(cell.id), cell.name.split("/").pop() || "cell"];
}

/** What a heatmap of the cell explains: its label as it stands, in its stored image. */
const explained = (cell) => ({ target: cell.label, image: () => imageOf(cell) });

function toggleHeat(cell) { if (cell) toggleHeatmap(tileOf(cell.id), cell.id, explained(cell)); }

/** Forget the open case's images and heatmaps (another case is opened). */
export function forgetTiles() {
  forgetCells();
  images.clear();
  pending.clear();
}

// ---- keys ----------------------------------------------------------------------------------------------------------
function onTileKey(event, cell) {
  const target = event.target;
  if (!cell || target.tagName === "SELECT" || target.tagName === "INPUT" || target.tagName === "BUTTON") return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;  // the browser's own shortcuts
  const call = Object.hasOwn(DECISION_KEYS, event.key.toLowerCase()) ? DECISION_KEYS[event.key.toLowerCase()] : null;
  const order = state.model.display_order || state.model.classes;
  if (/^[1-9]$/.test(event.key) && Number(event.key) <= order.length) {
    choose(cell, order[Number(event.key) - 1], { advance: true });
  } else if (call) {
    choose(cell, call, { advance: true });
  } else if (event.key === "Enter" && target === event.currentTarget) {
    confirmCell(cell, { advance: true });
  } else if (event.key === "h" || event.key === "H") {
    toggleHeat(cell);
  } else if (event.key === "m" || event.key === "M") {
    toggleMarks(tileOf(cell.id), cell.id, cell);
  } else if (event.key === "r" || event.key === "R") {
    toggleOutline(tileOf(cell.id), cell.id, cell);
  } else if (!moveFocus(event)) {
    return;
  }
  event.preventDefault();
}
