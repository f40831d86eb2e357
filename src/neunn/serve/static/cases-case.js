// One case: upload its cells, review them (tiles: cases-tiles.js), the summary and critical alert, the sign-off, the
// audit trail and the exports. What the page shows comes from the server's answers; a reload shows the same.
// The sign-off follows the two levels (casework.py): a technologist signs a case without a critical finding and submits
// one with a critical finding for a pathologist's verification; a critical finding's communication is recorded here.
import { session } from "./cases-api.js";
import {
  FILTERS, asReviewCell, isCriticalCell, isDecided, isLive, isLocked, isPathologist, isSigned, isVoidCase, isWaiting,
  labelText, liveCells, state,
} from "./cases-state.js";
import { followCase, stopFollowing } from "./cases-live.js";
import { buildTile, canAmend, forgetTiles, onCellChange, tileOf, updateTile } from "./cases-tiles.js";
import { noteWorklist, statusBadge } from "./cases-worklist.js";
import { api, bodyOf, LoggedOut } from "./core-api.js";
import { $, $$, facts, percent, readableTimes, when } from "./core-format.js";
import { showSummary } from "./core-summary.js";
import { domainWarning, summarize } from "./review.js";
import { sendInBatches, wireFileDrop } from "./uploading.js";

let loading = 0;

export function showCaseMessage(message) {
  $("#case-message-text").textContent = readableTimes(message) || "";
  $("#case-message").hidden = !message;
}

let opening = Promise.resolve();

/** Open case ``id``: fetch it as it was left, build its tiles and trail. */
export function openCase(id) {
  opening = fetchCase(id);
  return opening;
}

async function fetchCase(id) {
  const ticket = ++loading;
  if (state.caseId !== id) {
    forgetTiles();
    state.caseId = id;
    state.caseRow = null;
    state.cells = new Map();
    state.notes = new Map();
    state.mustDecide = new Set();
    state.uploadErrors = [];
    state.audit = [];
    state.filter = "all";
    $("#grid").replaceChildren();
    groupHeads.clear();
    $("#audit-table tbody").replaceChildren();
    $("#upload-errors").replaceChildren();
    $("#upload-errors").hidden = true;
    $("#progress").textContent = "";
    $("#sign-confirm").hidden = true;
    closeCallForm();
    closeVoidCase();
    showCaseMessage("");
    $("#case-view").dataset.loaded = "false";
    $("#case-view .layout").hidden = true;  // nothing of the previous case, nothing before this one answers
  }
  try {
    const response = await api(`/api/v1/cases/${id}`);
    const body = await bodyOf(response);
    if (ticket !== loading || state.caseId !== id) return;
    if (!response.ok) {
      $("#case-sample").textContent = "";
      showCaseMessage(body.error || `The case could not be loaded (HTTP ${response.status}).`);
      return;
    }
    applyCase(body);
    $("#case-view").dataset.loaded = "true";
    followCase(id, (change) => applyChange(id, change), showViewers);
    await loadAudit();
  } catch (error) {
    if (!(error instanceof LoggedOut)) showCaseMessage(`The case could not be loaded: ${error.message}`);
  }
}

/** The case as the server answered it: its row, its models, and every cell (tiles kept by cell id). */
function applyCase(body) {
  const { cells, models, ...row } = body;
  state.caseRow = { ...row, models };
  const seen = new Set();
  for (const cell of cells) {
    seen.add(cell.id);
    if (state.busy.has(cell.id)) continue;  // its save's answer will say
    state.cells.set(cell.id, cell);
    if (!tileOf(cell.id)) $("#grid").append(buildTile(cell));
  }
  for (const id of [...state.cells.keys()]) {
    if (!seen.has(id)) { state.cells.delete(id); tileOf(id)?.remove(); }
  }
  render();
}

/** Others' changes, as the case's event stream brings them: their cells (unless this page is saving one) and the row. */
function applyChange(id, change) {
  if (state.caseId !== id) return;
  for (const cell of change.cells) {
    if (state.busy.has(cell.id)) continue;  // this page's own save answers for it
    const known = state.cells.get(cell.id);
    if (known && known.version >= cell.version) continue;  // already as new (this page's own decision, say)
    state.cells.set(cell.id, cell);
    const tile = tileOf(cell.id);
    if (tile) updateTile(cell, tile); else $("#grid").append(buildTile(cell));
  }
  state.caseRow = { ...state.caseRow, ...change.case, models: state.caseRow.models };
  render();
  scheduleAudit();
}

/** Who else has the case open (this page's reviewer left out). */
function showViewers(names) {
  const others = names.filter((name) => name !== session.user);
  $("#case-viewers").textContent = others.length ? `Also on this case: ${others.join(", ")}` : "";
  $("#case-viewers").hidden = !others.length;
}

// ---- rendering -----------------------------------------------------------------------------------------------------
function caseRowNow() {
  // The row's counts follow the cells as the server last answered them (a decision's answer carries only the cell).
  // Voided cells count nowhere (casework._case_row); submitted, signed and void are the server's to say.
  const row = state.caseRow;
  const all = [...state.cells.values()];
  const cells = all.filter(isLive);
  const nDecided = cells.filter(isDecided).length;
  const kept = ["signed", "to_verify", "void"].includes(row.status);
  return {
    ...row, n_cells: cells.length, n_decided: nDecided, n_critical: cells.filter(isCriticalCell).length,
    n_flagged_open: cells.filter(isWaiting).length, n_voided_cells: all.length - cells.length,
    status: kept ? row.status : nDecided ? "in_progress" : "to_review",
    updated_at: [row.updated_at, ...all.map((c) => c.decided_at), ...all.map((c) => c.voided_at)].filter(Boolean)
      .sort().pop() ?? row.updated_at,
  };
}

export function render() {
  if (!state.caseRow || !state.model) return;
  state.caseRow = caseRowNow();
  const row = state.caseRow;
  $("#case-view .layout").hidden = false;
  const signed = isSigned();
  const voidCase = isVoidCase();
  document.title = `${row.sample_id} — NeuNN review station`;
  $("#case-view").dataset.status = row.status;
  $("#case-view").classList.toggle("signed", signed);
  $("#case-view").classList.toggle("void", voidCase);
  $("#case-sample").textContent = row.sample_id;
  statusBadge(row.status, $("#case-status"));
  facts($("#case-facts"), [
    ["Opened", `${row.created_by ?? "?"} · ${when(row.created_at)}`],
    ["Cells", `${row.n_cells} (${row.n_decided} decided)`],
    ["Flagged open", String(row.n_flagged_open)],
    ["Critical", String(row.n_critical)],
    ...(row.n_voided_cells ? [["Voided cells", `${row.n_voided_cells} (not counted)`]] : []),
    ...(row.submitted_by ? [["Submitted", `${row.submitted_by} · ${when(row.submitted_at)}`]] : []),
    ...(signed ? [["Signed", `${row.signed_by} · ${when(row.signed_at)}`]] : []),
    ...(voidCase ? [["Voided", `${row.voided_by ?? "?"} · ${when(row.voided_at)}`]] : []),
    ...(row.n_amendments ? [["Amendments", String(row.n_amendments)]] : []),
    ["Updated", when(row.updated_at)],
  ]);
  facts($("#case-models"), (row.models || []).map((m) => [m.run || `model ${m.id}`,
    `${m.arch ?? "?"} · ${m.backend} · review under ${percent(m.review_threshold)} · critical ` +
    `${(m.critical_classes || []).join(", ") || "none"}${m.weights_sha256 ? ` · weights ${m.weights_sha256.slice(0, 12)}` : ""}`]));
  if (!(row.models || []).length) facts($("#case-models"), [["–", "no cells yet"]]);
  const base = `/api/v1/cases/${row.id}`;
  $("#export-json").href = `${base}/export?format=json`;
  $("#export-cells-csv").href = `${base}/export?format=csv`;
  $("#export-audit-csv").href = `${base}/audit?format=csv`;
  $("#export-report-pdf").href = `${base}/report.pdf`;
  $("#export-fhir").href = `${base}/fhir`;
  $("#export-hl7").href = `${base}/hl7`;
  $("#export-fhir").hidden = $("#export-hl7").hidden = !signed; // a LIS takes signed results only (409 before)

  $("#signed-banner").hidden = !signed;
  $("#signed-text").textContent = signed
    ? `by ${row.signed_by} at ${when(row.signed_at)}: the case is locked. ` + (canAmend()
      ? "A change is an amendment: pick the class, give the reason, save."
      : "Only its signer or an admin may amend it.")
    : "";
  $("#void-banner").hidden = !voidCase;
  $("#void-text").textContent = voidCase
    ? `by ${row.voided_by ?? "?"} at ${when(row.voided_at)}: ${row.void_reason ?? ""}. Nothing more is done in it.` : "";
  $("#upload-panel").hidden = isLocked();
  $("#void-case-open").hidden = isLocked();
  if (isLocked()) closeVoidCase();
  renderSummary();
  renderFilters();
  renderSign();
  renderCalls();
  for (const cell of state.cells.values()) updateTile(cell);
  arrangeTiles();
  $("#empty").hidden = state.cells.size > 0;
  $("#empty").textContent = isLocked() ? `This ${signed ? "signed" : "void"} case has no cells.`
    : "No cells yet. Add the images of this sample on the left.";
  const bulk = shownToConfirm().length;
  $("#confirm-shown").hidden = isLocked();
  $("#confirm-shown").disabled = !bulk;
  $("#confirm-shown").textContent = bulk ? `Confirm ${bulk} unflagged shown` : "Confirm unflagged shown";
  $("#keys-help").textContent = keysHelp();
  renderAudit();
}

/** Every key a tile takes now: the classes (1–9 in display order), 0 unidentified, O other cell type, Enter… */
function keysHelp() {
  const n = Math.min(9, (state.model.display_order || state.model.classes).length);
  const classes = n > 1 ? `1–${n}` : "1";
  const view = "H heatmap · M marks · R outline · ←/→ move";
  if (isVoidCase() || (isSigned() && !canAmend())) return `Keys: ${view}`;
  if (isSigned()) {
    return `Keys: ${classes} class · 0 unidentified · O other cell type — each an amendment, with a reason · ${view}`;
  }
  return `Keys: ${classes} class · 0 unidentified · O other cell type · Enter confirm · ${view}`;
}

/** The summary of the case's cells as they stand; the alert follows the server's own flag on each cell (its current
 *  label is a critical class of its model), and so does the marking of a class's row. */
function renderSummary() {
  const m = state.model;
  const cells = liveCells();
  const critical = {};
  for (const c of cells.filter(isCriticalCell).sort((a, b) => (a.label < b.label ? -1 : 1))) {
    critical[c.label] = (critical[c.label] || 0) + 1;
  }
  const open = cells.filter((c) => c.out_of_domain && !isDecided(c)).length;
  const warning = m.ood_warning ? domainWarning(open, cells.length, m) : { warning: false };
  showSummary(summarize(cells.map(asReviewCell), m), m,
              { critical, criticalRows: Object.keys(critical), warning, decided: "decided" });
  const voided = state.cells.size - cells.length;
  $("#sum-voided").textContent = voided ? `${voided} voided cell${voided > 1 ? "s" : ""} left out.` : "";
}

function renderFilters() {
  const cells = [...state.cells.values()];
  for (const button of $$("#case-view .filter[data-filter]")) {
    button.querySelector("span").textContent = cells.filter(FILTERS[button.dataset.filter]).length;
    button.classList.toggle("active", button.dataset.filter === state.filter);
  }
}

/** What the sign button does for this reviewer on this case: "sign", "verify" (sign a submitted case) or "submit"
 *  (a technologist's case with a critical finding goes to a pathologist); null when there is nothing to do. */
function signMode() {
  const row = state.caseRow;
  if (isLocked()) return null;
  // As casework.sign: a cell critical as it stands, or one the model called critical, needs a pathologist.
  const critical = liveCells().some((c) => isCriticalCell(c) || calledCritical(c));
  if (!isPathologist(session.role)) return row.status === "to_verify" ? null : critical ? "submit" : "sign";
  return row.status === "to_verify" ? "verify" : "sign";
}

/** Whether the model called the cell a critical class of the model that classified it (whatever it is now). */
function calledCritical(cell) {
  const model = state.caseRow.models.find((m) => m.id === cell.model_id);
  return Boolean(model?.critical_classes.includes(cell.predicted_label));
}

const SIGN_TEXT = {
  sign: ["Sign case…", "Sign now"], verify: ["Verify and sign…", "Verify and sign now"],
  submit: ["Submit for verification…", "Submit now"],
};

function renderSign() {
  const signed = isSigned();
  const row = state.caseRow;
  const waiting = liveCells().filter(isWaiting).length;
  const busy = state.busy.size > 0;
  const mode = signMode();
  const help = $("#sign-help");
  const note = $("#sign-note");
  const doing = mode === "submit" ? "submitted" : "signed";
  $("#sign-button").hidden = !mode;
  $("#sign-button").dataset.mode = mode ?? "";
  if (mode) [$("#sign-button").textContent, $("#sign-now").textContent] = SIGN_TEXT[mode];
  $("#sign-show-waiting").hidden = !mode || !waiting;
  if (signed) {
    help.textContent = `Signed by ${row.signed_by} at ${when(row.signed_at)}.` +
      (row.submitted_by ? ` Submitted for verification by ${row.submitted_by} at ${when(row.submitted_at)}.` : "") +
      (row.n_amendments ? ` Amended ${row.n_amendments} time${row.n_amendments > 1 ? "s" : ""} since.` : "");
    $("#sign-confirm").hidden = true;
  } else if (isVoidCase()) {
    help.textContent = `Voided by ${row.voided_by ?? "?"} at ${when(row.voided_at)}: it is never signed.`;
    $("#sign-confirm").hidden = true;
  } else if (!mode) {
    help.textContent = `Submitted for verification by ${row.submitted_by ?? "?"} at ${when(row.submitted_at)}: ` +
      "a pathologist verifies and signs it (the critical finding needs their signature).";
    $("#sign-confirm").hidden = true;
  } else if (!row.n_cells) {
    help.textContent = "Add the sample's cells first.";
  } else if (waiting) {
    help.textContent = `${waiting} flagged cell${waiting > 1 ? "s" : ""} (review bin, outside the model's experience ` +
      `or critical) still need a decision before the case can be ${doing}.`;
  } else {
    const rest = row.n_cells - row.n_decided;
    help.textContent = "Every flagged cell has a decision. " + (mode === "submit"
      ? "Submitting sends the case to a pathologist, who verifies and signs it."
      : rest ? `Signing accepts the other ${rest} cell${rest > 1 ? "s" : ""} as classified and locks the case.`
        : "Signing locks the case.");
  }
  note.hidden = !(mode === "submit" || mode === "verify");
  note.textContent = mode === "submit"
    ? "This case has a critical finding: a pathologist signs it. Submit it for verification."
    : mode === "verify" ? `Submitted for verification by ${row.submitted_by ?? "?"} at ${when(row.submitted_at)}.` : "";
  help.dataset.waiting = String(waiting);
  $("#sign-button").disabled = !mode || !row.n_cells || waiting > 0 || busy;
  if (waiting || busy || !mode) $("#sign-confirm").hidden = true;
}

// ---- critical-value communication ----------------------------------------------------------------------------------
const METHOD_TEXT = { phone: "phone", in_person: "in person", electronic: "electronic", other: "other" };

/** The panel of a case with a critical finding: the communications recorded, and the form to record one; a signed
 *  critical case with none recorded gets a reminder. */
function renderCalls() {
  const row = state.caseRow;
  const calls = row.critical_calls || [];
  const critical = row.n_critical > 0;
  $("#calls-panel").hidden = !critical && !calls.length;
  $("#calls-count").textContent = calls.length ? `· ${calls.length}` : "";
  $("#call-list").replaceChildren(...calls.map((c) => {
    const li = document.createElement("li");
    li.dataset.testid = "call";
    li.append(Object.assign(document.createElement("strong"), { textContent: c.recipient }),
              ` · ${METHOD_TEXT[c.method] ?? c.method} · ${when(c.communicated_at)}`,
              Object.assign(document.createElement("span"), {
                className: "muted block", textContent: `recorded by ${c.recorded_by ?? "?"} at ${when(c.recorded_at)}` }));
    if (c.note) li.append(Object.assign(document.createElement("span"), { className: "block", textContent: c.note }));
    return li;
  }));
  $("#call-none").hidden = calls.length > 0 || !critical;
  const canRecord = critical && !isVoidCase();
  $("#call-open").hidden = !canRecord || !$("#call-form").hidden;
  if (!canRecord) closeCallForm();
  $("#call-reminder").hidden = !(isSigned() && critical && !calls.length);
}

function localNow() {
  const t = new Date(), pad = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}T${pad(t.getHours())}:${pad(t.getMinutes())}`;
}

function openCallForm() {
  $("#calls-panel").hidden = false;
  $("#call-form").hidden = false;
  $("#call-open").hidden = true;
  $("#call-when").value = localNow();
  $("#call-error").hidden = true;
  $("#call-save").disabled = !$("#call-recipient").value.trim();
  $("#call-recipient").focus();
}

function closeCallForm() {
  $("#call-form").hidden = true;
  $("#call-form").reset();
  $("#call-error").hidden = true;
  $("#call-open").hidden = false;
}

async function recordCall(event) {
  event.preventDefault();
  const caseId = state.caseId;
  const recipient = $("#call-recipient").value.trim();
  if (!recipient) { $("#call-recipient").focus(); return; }
  const at = $("#call-when").value ? new Date($("#call-when").value) : null;
  const note = $("#call-note").value.trim();
  const json = { recipient, method: $("#call-method").value, ...(note ? { note } : {}),
                 ...(at && !Number.isNaN(at.getTime()) ? { communicated_at: at.toISOString() } : {}) };
  const error = (text) => { $("#call-error").textContent = readableTimes(text); $("#call-error").hidden = false; };
  $("#call-save").disabled = true;
  try {
    const response = await api(`/api/v1/cases/${caseId}/critical-calls`, { method: "POST", json });
    const body = await bodyOf(response);
    if (state.caseId !== caseId) return;
    if (!response.ok) { error(`Not recorded: ${body.error || `HTTP ${response.status}`}`); return; }
    state.caseRow.critical_calls = [...(state.caseRow.critical_calls || []), body];
    state.caseRow.n_critical_calls = state.caseRow.critical_calls.length;
    closeCallForm();
    render();
    scheduleAudit();
    $("#call-open").focus();
  } catch (err) {
    if (!(err instanceof LoggedOut)) error(`Not recorded: ${err.message}`);
  } finally {
    $("#call-save").disabled = !$("#call-recipient").value.trim();
  }
}

// ---- voiding a wrongly made case -----------------------------------------------------------------------------------
function closeVoidCase() {
  $("#void-case-form").hidden = true;
  $("#void-case-reason").value = "";
  $("#void-case-save").disabled = true;
  $("#void-case-error").hidden = true;
}

async function voidCase(event) {
  event.preventDefault();
  const caseId = state.caseId, sample = state.caseRow?.sample_id;
  const reason = $("#void-case-reason").value.trim();
  if (!reason) return;
  $("#void-case-save").disabled = true;
  const error = (text) => { $("#void-case-error").textContent = readableTimes(text); $("#void-case-error").hidden = false; };
  try {
    const response = await api(`/api/v1/cases/${caseId}/void`, { method: "POST", json: { reason } });
    const body = await bodyOf(response);
    if (state.caseId !== caseId) return;
    if (!response.ok) { error(`Not voided: ${body.error || `HTTP ${response.status}`}`); return; }
    closeVoidCase();
    noteWorklist(`Case ${sample} was voided (${reason}); it is kept and listed under “Void”.`);
    location.hash = "#worklist";
  } catch (err) {
    if (!(err instanceof LoggedOut)) error(`Not voided: ${err.message}`);
  } finally {
    $("#void-case-save").disabled = !$("#void-case-reason").value.trim();
  }
}

const groupHeads = new Map();  // label → its heading in the grid when tiles are grouped by class

function groupHead(label, cells) {
  let head = groupHeads.get(label);
  if (!head) {
    head = Object.assign(document.createElement("h3"), { className: "group-head" });
    head.dataset.label = label;
    groupHeads.set(label, head);
  }
  const shown = cells.filter(FILTERS[state.filter]).length;
  const name = state.model.class_names?.[label];
  head.textContent = `${labelText(label)}${name && name !== label ? ` · ${name}` : ""} — ${cells.length} cell${cells.length > 1 ? "s" : ""}`;
  head.hidden = shown === 0;
  return head;
}

/** Tiles in upload order, or grouped under their current class (the model's call until decided) in display order;
 *  the DOM is only touched when the order changes, and the focused tile keeps the focus. */
function arrangeTiles() {
  const grid = $("#grid");
  const cells = [...state.cells.values()].sort((a, b) => a.position - b.position);
  let wanted;
  if (state.grouped) {
    const order = state.model.display_order || state.model.classes;
    const rank = (label) => { const i = order.indexOf(label); return i < 0 ? order.length : i; };
    cells.sort((a, b) => rank(a.label) - rank(b.label) || a.position - b.position);
    wanted = [];
    for (const [i, cell] of cells.entries()) {
      if (i === 0 || cells[i - 1].label !== cell.label) wanted.push(groupHead(cell.label, cells.filter((c) => c.label === cell.label)));
      wanted.push(tileOf(cell.id));
    }
  } else {
    wanted = cells.map((c) => tileOf(c.id));
  }
  wanted = wanted.filter(Boolean);
  const now = [...grid.children];
  if (now.length === wanted.length && now.every((el, i) => el === wanted[i])) return;
  const focused = document.activeElement;
  grid.replaceChildren(...wanted);
  if (focused && focused !== document.activeElement && grid.contains(focused)) focused.focus();
}

/** The shown cells one action may confirm: undecided, and neither flagged nor critical (those need their own
 *  decision, made with the cell on the screen; the server refuses them in bulk too). */
export function shownToConfirm() {
  if (isLocked()) return [];
  return liveCells().filter((c) => FILTERS[state.filter](c) && !isDecided(c) && !c.flagged &&
                                                 !c.critical && !state.busy.has(c.id));
}

/** Confirm the shown unflagged cells by one POST: all are saved, or none (the server's reason is shown). */
async function confirmShown() {
  const cells = shownToConfirm();
  if (!cells.length) return;
  const caseId = state.caseId;
  cells.forEach((c) => state.busy.add(c.id));
  try {
    const response = await api(`/api/v1/cases/${caseId}/bulk-confirmation`,
                               { method: "POST", json: { cells: cells.map((c) => ({ id: c.id, version: c.version })) } });
    const body = await bodyOf(response);
    if (state.caseId !== caseId) return;
    if (response.ok) {
      for (const cell of body.cells) {
        state.cells.set(cell.id, cell);
        state.notes.set(cell.id, { state: "saved", text: `Saved ✓ (with ${body.cells.length - 1} others)` });
      }
    } else {
      showCaseMessage(`Nothing was confirmed: ${body.error || `HTTP ${response.status}`}`);
    }
  } catch (error) {
    if (error instanceof LoggedOut) return;
    showCaseMessage(`Nothing was confirmed: ${error.message}`);
  } finally {
    cells.forEach((c) => state.busy.delete(c.id));
  }
  if (state.caseId !== caseId) return;
  cells.forEach((c) => updateTile(state.cells.get(c.id)));
  render();
  scheduleAudit();
}

// ---- the audit trail -----------------------------------------------------------------------------------------------
const ACTIONS = { create: "opened", predict: "model call", confirm: "confirmed", reclassify: "reclassified",
                  amend: "amended", sign: "signed", bulk_confirm: "confirmed in bulk",
                  submit: "submitted for verification", void: "case voided", void_cell: "cell voided",
                  communicate: "critical finding communicated" };
const NO_CHANGE_SHOWN = new Set(["create", "sign", "submit", "communicate"]);
let auditTimer = null, auditTicket = 0;

export function scheduleAudit() {
  clearTimeout(auditTimer);
  auditTimer = setTimeout(loadAudit, 250);
}

export async function loadAudit() {
  const id = state.caseId, ticket = ++auditTicket;
  try {
    const response = await api(`/api/v1/cases/${id}/audit`);
    const body = await bodyOf(response);
    if (id !== state.caseId || ticket !== auditTicket || !response.ok) return;
    state.audit = body.audit;
    renderAudit();
  } catch (error) {
    if (!(error instanceof LoggedOut)) $("#audit-count").textContent = `(could not be loaded: ${error.message})`;
  }
}

function detailText(entry) {
  const d = entry.detail || {};
  if (d.reason) return `Reason: ${d.reason}`;
  if (entry.action === "communicate") {
    return `to ${entry.to ?? "?"} · ${METHOD_TEXT[d.method] ?? d.method ?? ""} · ${when(d.communicated_at)}` +
      (d.note ? ` · ${d.note}` : "");
  }
  if (entry.action === "submit" && d.n_cells != null) return `${d.n_cells} cells, ${d.n_critical ?? 0} critical`;
  if (d.accepted_at_signing) return "accepted as classified at signing";
  if (entry.action === "predict" && d.probability != null) {
    return `${percent(d.probability)}${d.needs_review ? " · review" : ""}${d.out_of_domain ? " · outside experience" : ""}`;
  }
  if (entry.action === "sign" && d.n_cells != null) {
    return `${d.n_cells} cells, ${d.n_accepted_as_classified} accepted as classified` +
      (d.verified_submission ? " · verified a submission" : "");
  }
  return "";
}

function renderAudit() {
  const showPredictions = $("#audit-show-predictions").checked;
  const entries = state.audit.filter((e) => showPredictions || e.action !== "predict");
  const hidden = state.audit.length - entries.length;
  $("#audit-count").textContent = state.audit.length
    ? `· ${state.audit.length} entr${state.audit.length > 1 ? "ies" : "y"}${hidden ? `, ${hidden} model calls hidden` : ""}` : "";
  const rows = entries.slice().reverse().map((e) => {  // newest first
    const tr = document.createElement("tr");
    tr.dataset.testid = "audit-row";
    tr.dataset.action = e.action;
    tr.dataset.user = e.user ?? "";
    if (e.cell_id != null) tr.dataset.cellId = e.cell_id;
    const cell = e.cell_id != null ? state.cells.get(e.cell_id) : null;
    const change = e.from != null || e.to != null ? `${labelText(e.from ?? "–")} → ${labelText(e.to ?? "–")}` : "";
    const values = [when(e.at), e.user ?? "system", ACTIONS[e.action] ?? e.action,
                    cell ? `#${cell.position + 1} ${cell.name}` : e.cell_id != null ? `cell ${e.cell_id}` : "",
                    NO_CHANGE_SHOWN.has(e.action) ? "" : change, detailText(e)];
    const classes = ["when", "who", "action", "cellname", "change", "detail"];
    tr.append(...values.map((v, i) => Object.assign(document.createElement("td"), { textContent: v, className: classes[i] })));
    tr.children[2].dataset.action = e.action;
    tr.children[0].title = e.at;
    return tr;
  });
  $("#audit-table tbody").replaceChildren(...rows);
}

// ---- uploading ------------------------------------------------------------------------------------------------------
/** An image the case holds already (casework.split_repeats): not added again, counted once. */
function duplicateText(e) {
  const held = e.duplicateOf != null ? state.cells.get(e.duplicateOf) : null;
  const where = held ? ` as #${held.position + 1} · ${held.name}`
    : e.duplicateOf == null ? " (the same image twice in this upload)" : "";
  return `already in the case${where}: not added again, counted once.`;
}

function renderUploadErrors() {
  const list = $("#upload-errors");
  list.replaceChildren(...state.uploadErrors.map((e) => {
    const li = document.createElement("li");
    li.dataset.name = e.name;
    li.classList.toggle("duplicate", Boolean(e.duplicate));
    li.append(Object.assign(document.createElement("strong"), { textContent: e.name }),
              ` — ${e.duplicate ? duplicateText(e) : e.error}`);
    return li;
  }));
  list.hidden = state.uploadErrors.length === 0;
}

async function sendBatch(caseId, files) {
  const form = new FormData();
  files.forEach((file) => form.append("files", file, file.name));
  const response = await api(`/api/v1/cases/${caseId}/cells`, { method: "POST", body: form });
  const body = await bodyOf(response);
  if (!Array.isArray(body.cells)) {  // the request as a whole was refused: every file of it gets the reason
    files.forEach((file) => state.uploadErrors.push({ name: file.name, error: body.error || `HTTP ${response.status}` }));
    return 0;
  }
  for (const e of body.errors || []) {
    state.uploadErrors.push({ name: e.name, error: e.error, status: e.status,
                              duplicate: e.status === 409 && "duplicate_of" in e, duplicateOf: e.duplicate_of });
  }
  if (state.caseId !== caseId) return body.cells.length;
  for (const cell of body.cells) {
    state.cells.set(cell.id, cell);
    if (!tileOf(cell.id)) $("#grid").append(buildTile(cell));
  }
  return body.cells.length;
}

export async function addFiles(fileList) {
  const files = [...fileList];
  const caseId = state.caseId;
  if (!state.caseRow) await opening;  // files dropped while the case is still loading wait for it
  if (!files.length || !state.model || !state.caseRow || state.caseId !== caseId || isLocked()) return;
  const progress = $("#progress");
  progress.classList.remove("error");
  progress.dataset.state = "busy";
  state.uploadErrors = [];
  renderUploadErrors();
  let added = 0;
  state.uploading = true;
  try {
    const sent = await sendInBatches(files, state.model.limits, {
      progress,
      send: async (group) => { added += await sendBatch(caseId, group); },
      refuse: (file, reason) => state.uploadErrors.push({ name: file.name, error: reason }),
      after: () => {
        if (state.caseId !== caseId) return false;
        renderUploadErrors();
        render();
        return true;
      },
    });
    if (!sent) return;
    const repeats = state.uploadErrors.filter((e) => e.duplicate).length;
    const failed = state.uploadErrors.length - repeats;
    progress.textContent = `${added} cell(s) added` +
      (repeats ? `; ${repeats} already in the case (not added again)` : "") +
      (failed ? `; ${failed} file(s) could not be read (below).` : repeats ? " (below)." : ".");
    progress.classList.toggle("error", failed > 0);
  } catch (error) {
    if (error instanceof LoggedOut) return;
    progress.textContent = error.message;
    progress.classList.add("error");
  } finally {
    progress.dataset.state = "done";
    state.uploading = false;
  }
  if (state.caseId !== caseId) return;
  renderUploadErrors();
  await openCase(caseId);  // the case's row and trail as the server has them now
}

// ---- signing -------------------------------------------------------------------------------------------------------
async function signCase() {
  const caseId = state.caseId;
  const mode = $("#sign-button").dataset.mode;
  $("#sign-now").disabled = true;
  try {
    const response = await api(`/api/v1/cases/${caseId}/${mode === "submit" ? "submission" : "signature"}`,
                               { method: "POST" });
    const body = await bodyOf(response);
    if (state.caseId !== caseId) return;
    $("#sign-confirm").hidden = true;
    if (response.ok) {
      showCaseMessage("");
    } else {
      showCaseMessage(body.error ||
        `The case could not be ${mode === "submit" ? "submitted" : "signed"} (HTTP ${response.status}).`);
      if (Array.isArray(body.cells) && body.cells.length) {  // the flagged cells that still need a decision
        state.mustDecide = new Set(body.cells);
        state.filter = "waiting";
      }
    }
    await openCase(caseId);  // signing accepts the other cells: their labels and versions changed
  } catch (error) {
    if (!(error instanceof LoggedOut)) showCaseMessage(error.message);
  } finally {
    $("#sign-now").disabled = false;
  }
}

function showWaiting() {
  state.filter = "waiting";
  render();
  const first = $("#grid .tile.waiting:not([hidden])");
  if (first) first.focus();
}

/** The print view's header: the sample, its status, when and by whom it was printed (cases.css @media print). */
function printCase() {
  const row = state.caseRow;
  $("#print-sample").textContent = row.sample_id;
  $("#print-status").textContent = row.status === "signed" ? "(signed)" : `(${row.status.replace("_", " ")}: preliminary)`;
  $("#print-when").textContent = when(new Date().toISOString());
  $("#print-who").textContent = session.user;
  window.print();
}

export function wireCase() {
  $("#print-case").addEventListener("click", printCase);
  window.addEventListener("beforeprint", () => {  // a print from the browser's menu gets the same header
    if (state.caseRow && !$("#print-sample").textContent) {
      $("#print-sample").textContent = state.caseRow.sample_id;
      $("#print-who").textContent = session.user;
      $("#print-when").textContent = when(new Date().toISOString());
    }
  });
  onCellChange(({ refresh } = {}) => {
    render();
    scheduleAudit();
    if (refresh) openCase(state.caseId);
  });
  wireFileDrop($("#file-input"), $("#dropzone"), addFiles);
  for (const button of $$("#case-view .filter[data-filter]")) {
    button.addEventListener("click", () => { state.filter = button.dataset.filter; render(); });
  }
  $("#alert-show").addEventListener("click", () => { state.filter = "critical"; render(); });
  $("#domain-show").addEventListener("click", () => { state.filter = "ood"; render(); });
  $("#sign-show-waiting").addEventListener("click", showWaiting);
  $("#confirm-shown").addEventListener("click", () => {
    $("#confirm-shown").disabled = true;
    confirmShown();
  });
  $("#case-reload").addEventListener("click", () => openCase(state.caseId));
  $("#case-message-close").addEventListener("click", () => showCaseMessage(""));
  $("#sign-button").addEventListener("click", () => {
    const row = state.caseRow;
    const rest = row.n_cells - row.n_decided;
    const uncommunicated = row.n_critical > 0 && !(row.critical_calls || []).length;
    $("#sign-confirm-text").textContent = $("#sign-button").dataset.mode === "submit"
      ? `Submit case ${row.sample_id} for a pathologist's verification as ${session.user}? Its critical finding needs ` +
        "a pathologist's signature; decisions may still be corrected until then."
      : `${$("#sign-button").dataset.mode === "verify" ? "Verify and sign" : "Sign"} case ${row.sample_id} as ` +
        `${session.user}? ` +
        (rest ? `The ${rest} undecided cell${rest > 1 ? "s" : ""} (none flagged) will be accepted as classified. ` : "") +
        "The case is then locked; later changes are amendments with a reason." +
        (uncommunicated ? " No communication of the critical finding is recorded yet: record it too." : "");
    $("#sign-confirm").hidden = false;
    $("#sign-now").focus();
  });
  $("#sign-cancel").addEventListener("click", () => { $("#sign-confirm").hidden = true; });
  $("#sign-now").addEventListener("click", signCase);
  $("#audit-show-predictions").addEventListener("change", renderAudit);
  $("#call-open").addEventListener("click", openCallForm);
  $("#call-reminder-record").addEventListener("click", openCallForm);
  $("#call-cancel").addEventListener("click", () => { closeCallForm(); $("#call-open").focus(); });
  $("#call-recipient").addEventListener("input", () => { $("#call-save").disabled = !$("#call-recipient").value.trim(); });
  $("#call-form").addEventListener("submit", recordCall);
  $("#call-form").addEventListener("keydown", (event) => {
    if (event.key === "Escape") { closeCallForm(); $("#call-open").focus(); }
  });
  $("#void-case-open").addEventListener("click", () => {
    $("#void-case-form").hidden = false;
    $("#void-case-reason").focus();
  });
  $("#void-case-reason").addEventListener("input", () => {
    $("#void-case-save").disabled = !$("#void-case-reason").value.trim();
  });
  $("#void-case-form").addEventListener("submit", voidCase);
  $("#void-case-cancel").addEventListener("click", () => { closeVoidCase(); $("#void-case-open").focus(); });
  $("#void-case-form").addEventListener("keydown", (event) => {
    if (event.key === "Escape") { closeVoidCase(); $("#void-case-open").focus(); }
  });
  $("#group-by-class").addEventListener("change", (event) => { state.grouped = event.target.checked; render(); });
}

/** Leave the case view (the worklist is shown): stop following its answers. */
export function closeCase() {
  stopFollowing();
  loading++;
  state.caseId = null;
  state.caseRow = null;
}
