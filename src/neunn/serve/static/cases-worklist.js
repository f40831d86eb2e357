// The worklist: every case with its status and counts, critical findings first (the server's order), a filter by
// status (voided cases are listed under their own filter only), and the form that opens a new case for a sample.
import { state } from "./cases-state.js";
import { api, bodyOf, LoggedOut } from "./core-api.js";
import { $, $$, when } from "./core-format.js";

export const STATUS_TEXT = { to_review: "To review", in_progress: "In progress", to_verify: "To verify",
                             signed: "Signed", void: "Void" };

/** A line over the worklist (e.g. the case just voided); "" hides it. */
export function noteWorklist(message) {
  $("#worklist-note").textContent = message || "";
  $("#worklist-note").hidden = !message;
}

export function statusBadge(status, element = document.createElement("span")) {
  element.className = `status-badge status-${status}`;
  element.dataset.status = status;
  element.textContent = STATUS_TEXT[status] ?? status;
  return element;
}

let counts = {};
let loading = 0;

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (text instanceof Node) td.append(text); else td.textContent = text ?? "";
  return td;
}

function who(name, at) {
  if (!name) return "–";
  const span = document.createElement("span");
  span.append(Object.assign(document.createElement("span"), { textContent: name }),
              Object.assign(document.createElement("span"), { className: "muted small block", textContent: when(at) }));
  return span;
}

function row(c) {
  const tr = document.createElement("tr");
  tr.dataset.caseId = c.id;
  tr.dataset.testid = "case-row";
  tr.dataset.status = c.status;
  tr.dataset.sample = c.sample_id;
  tr.classList.toggle("critical-row", c.n_critical > 0 && c.status !== "signed" && c.status !== "void");
  const badge = statusBadge(c.status);
  if (c.status === "to_verify") badge.title = `Submitted for verification by ${c.submitted_by ?? "?"} at ${when(c.submitted_at)}`;
  if (c.status === "void") badge.title = `Voided by ${c.voided_by ?? "?"} at ${when(c.voided_at)}: ${c.void_reason ?? ""}`;
  const status = document.createElement("span");
  status.append(badge);
  if (c.status === "to_verify") {
    status.append(Object.assign(document.createElement("span"), {
      className: "muted small block", textContent: `by ${c.submitted_by ?? "?"}` }));
  } else if (c.status === "void") {
    status.append(Object.assign(document.createElement("span"), {
      className: "muted small block", textContent: c.void_reason ?? "" }));
  }
  const link = Object.assign(document.createElement("a"), { href: `#case=${c.id}`, textContent: c.sample_id,
                                                            className: "case-link" });
  tr.append(
    cell(link, "sample"),
    cell(status),
    cell(String(c.n_cells), "num"),
    cell(String(c.n_decided), "num"),
    cell(c.n_flagged_open ? String(c.n_flagged_open) : "–", "num"),
    cell(c.n_critical ? Object.assign(document.createElement("span"), {
      className: "critical-tag", textContent: `⚠ ${c.n_critical} critical` }) : "–", "critical-cell"),
    cell(who(c.created_by, c.created_at)),
    cell(c.signed_by ? who(c.signed_by, c.signed_at) : "–"),
    cell(when(c.updated_at) + (c.n_amendments ? ` · ${c.n_amendments} amendment${c.n_amendments > 1 ? "s" : ""}` : "")),
  );
  tr.addEventListener("click", (event) => { if (event.target !== link) location.hash = `case=${c.id}`; });
  return tr;
}

/** Reload the worklist (with the status filter) and show it. */
export async function loadWorklist() {
  const ticket = ++loading;
  const status = state.worklistStatus;
  const query = status ? `?status=${encodeURIComponent(status)}` : "";
  try {
    const response = await api(`/api/v1/cases${query}`);
    const body = await bodyOf(response);
    if (ticket !== loading) return;
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    if (!status) {
      counts = body.cases.reduce((n, c) => ({ ...n, [c.status]: (n[c.status] || 0) + 1 }),
                                 { "": body.cases.length, void: counts.void });  // void: only its own filter knows
    } else {
      counts[status] = body.cases.length;
    }
    $("#case-table tbody").replaceChildren(...body.cases.map(row));
    $("#worklist-empty").hidden = body.cases.length > 0;
    $("#worklist-empty").textContent = status ? `No case is ${STATUS_TEXT[status].toLowerCase()}.` : "No cases yet: open one above.";
    $("#case-table").dataset.loaded = "true";
    renderFilters();
  } catch (error) {
    if (!(error instanceof LoggedOut)) showNewCaseError(`The worklist could not be loaded: ${error.message}`);
  }
}

function renderFilters() {
  for (const button of $$("#status-filters .filter")) {
    button.classList.toggle("active", button.dataset.status === state.worklistStatus);
    const n = counts[button.dataset.status];
    button.querySelector("span").textContent = counts[""] == null || (button.dataset.status === "void" && n == null)
      ? "" : n ?? 0;
  }
}

function showNewCaseError(message) {
  $("#new-case-error").textContent = message;
  $("#new-case-error").hidden = !message;
}

async function openNewCase(event) {
  event.preventDefault();
  const input = $("#new-sample-id");
  const sampleId = input.value.trim();
  if (!sampleId) { showNewCaseError("Enter the sample ID of the new case."); input.focus(); return; }
  const button = $("#new-case-submit");
  button.disabled = true;
  showNewCaseError("");
  try {
    const response = await api("/api/v1/cases", { method: "POST", json: { sample_id: sampleId } });
    const body = await bodyOf(response);
    if (response.ok) {
      input.value = "";
      location.hash = `case=${body.id}`;
    } else {
      showNewCaseError(body.error || `The case could not be opened (HTTP ${response.status}).`);
      if (response.status === 409) {  // the sample has a case already: point at it
        const existing = $(`#case-table tr[data-sample="${CSS.escape(sampleId)}"] a`);
        if (existing) existing.focus();
      }
    }
  } catch (error) {
    if (!(error instanceof LoggedOut)) showNewCaseError(error.message);
  } finally {
    button.disabled = false;
  }
}

export function wireWorklist() {
  $("#new-case-form").addEventListener("submit", openNewCase);
  for (const button of $$("#status-filters .filter")) {
    button.addEventListener("click", () => {
      state.worklistStatus = button.dataset.status;
      noteWorklist("");
      renderFilters();
      loadWorklist();
    });
  }
  $("#worklist-refresh").addEventListener("click", () => loadWorklist());
}
