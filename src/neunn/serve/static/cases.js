// NeuNN review station with a case store: the worklist (#worklist) and one case's review (#case=ID), for a logged-in
// reviewer. Plain JavaScript modules, no build step; the only network traffic is this server's /api/v1.
// Modules: cases-api.js (session, CSRF token, login), cases-state.js (shared state, what a cell is), cases-worklist.js,
// cases-case.js (one case: upload, summary, sign-off, audit), cases-tiles.js (one tile per cell, decisions); shared
// cases-account.js (the account dialog: your password; an admin's users); shared
// with the one-sample page: core-api.js (requests, the unreachable-server banner), core-tiles.js (a cell's call, heatmap, vacuole marks),
// core-summary.js (summary panel, alert), core-format.js, uploading.js, and review.js (summary, alert and warning
// wording).
import { wireAccount } from "./cases-account.js";
import { loadSession, logout, session } from "./cases-api.js";
import { closeCase, openCase, wireCase } from "./cases-case.js";
import { state } from "./cases-state.js";
import { loadWorklist, wireWorklist } from "./cases-worklist.js";
import { api, bodyOf, LoggedOut } from "./core-api.js";
import { $, percent } from "./core-format.js";

function showMessage(message) {
  $("#page-message-text").textContent = message || "";
  $("#page-message").hidden = !message;
}

function renderHeader() {
  const m = state.model;
  $("#user-name").textContent = session.user;
  $("#user-role").textContent = session.role;
  $("#whoami").hidden = false;
  $("#logout").hidden = false;
  $("#account-open").hidden = false;
  const critical = (m.critical_classes || []).join(", ") || "none";
  $("#model-line").textContent = [runText(m.run), m.arch, `${m.backend} backend`,
    `review under ${percent(m.review_threshold)}`, `critical: ${critical}`].filter(Boolean).join(" · ");
  $("#model-line").title = `${m.classes.length} classes: ${m.classes.join(", ")}`;
  $("#synthetic-banner").hidden = !m.synthetic_data;
}

/** The run's name for the model line: "Run tiny", but a name that says "run" already stands alone (never "Run run"). */
function runText(run) {
  if (!run) return null;
  return /run/i.test(run) ? run : `Run ${run}`;
}

/** #case=ID → that case; anything else → the worklist. */
function route() {
  const match = location.hash.match(/^#case=(\d+)$/);
  $("#loading").hidden = true;
  if (match) {
    $("#worklist-view").hidden = true;
    $("#case-view").hidden = false;
    $("#nav-back").hidden = false;
    openCase(Number(match[1]));
  } else {
    closeCase();
    document.title = "Worklist — NeuNN review station";
    $("#case-view").hidden = true;
    $("#nav-back").hidden = true;
    $("#worklist-view").hidden = false;
    loadWorklist();
  }
}

async function start() {
  try {
    await loadSession();
    const response = await api("/api/v1/model");
    const body = await bodyOf(response);
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    state.model = body;
    renderHeader();
    route();
    window.addEventListener("hashchange", route);
  } catch (error) {
    if (error instanceof LoggedOut) return;
    $("#loading").hidden = true;
    showMessage(`The station could not start: ${error.message}`);
  }
}

$("#logout").addEventListener("click", () => logout());
$("#page-message-close").addEventListener("click", () => showMessage(""));
// Leaving while a decision or an upload is on its way: the browser asks first (what is saved already says so).
window.addEventListener("beforeunload", (event) => { if (state.busy.size || state.uploading) event.preventDefault(); });
wireWorklist();
wireCase();
wireAccount();
start();
