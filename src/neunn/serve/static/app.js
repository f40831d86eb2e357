// NeuNN review page: upload a sample's cells, see the model's calls, correct them, export the reviewed sample.
// Plain JavaScript modules, no build step; the only network traffic is this server's /api/v1 (no CDN, works offline).
// Images stay in the browser's memory; the server keeps nothing; exports are downloads made here.
// Modules: state.js (shared state), tiles.js (one tile per cell), review.js (pure logic), and the core shared with the
// case pages: core-api.js (requests), core-tiles.js (a cell's call, heatmap), core-summary.js, core-format.js.
import { api, bodyOf, credentials, errorOf, onAuthFailure } from "./core-api.js";
import { $, facts, percent } from "./core-format.js";
import { showSummary } from "./core-summary.js";
import { forgetCells } from "./core-tiles.js";
import { bulkConfirmable, exportName, exportRows, modelCall, summarize, toCsv, toJson } from "./review.js";
import { FILTERS, state } from "./state.js";
import { buildTile, onCellChange, updateTile } from "./tiles.js";
import { sendInBatches, wireFileDrop } from "./uploading.js";

// ---- the access token ----------------------------------------------------------------------------------------------
function readToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("neunn-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname); // keep the token out of the address bar and history
  }
  credentials.token = sessionStorage.getItem("neunn-token");
}

function askForToken() {
  $("#token-form").hidden = false;
  $("#token-input").focus();
  throw new Error("This server needs an access token: enter it above.");
}

async function loadModel() {
  const response = await api("/api/v1/model");
  if (!response.ok) throw new Error(await errorOf(response));
  state.model = await response.json();
  renderModel();
  renderSummary();
}

// ---- uploading -----------------------------------------------------------------------------------------------------
function dataUrlToBlob(url) {
  const [head, data] = url.split(",");
  const bytes = Uint8Array.from(atob(data), (ch) => ch.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5, head.indexOf(";")) });
}

function addCell(name, blob, result, error) {
  const cell = { id: state.nextId++, name, blob, url: blob ? URL.createObjectURL(blob) : null, result, error,
                 final: null, reviewed: false };
  state.cells.push(cell);
  $("#grid").append(buildTile(cell));
}

async function sendBatch(files) {
  const form = new FormData();
  files.forEach((file) => form.append("files", file, file.name));
  const response = await api("/api/v1/predict?include_images=true", { method: "POST", body: form });
  const body = await bodyOf(response);
  if (!body.results) { // the request as a whole was refused: every file of it gets the reason
    files.forEach((file) => addCell(file.name, null, null, body.error || `HTTP ${response.status}`));
    return;
  }
  for (const result of body.results) {
    const source = files[result.upload];
    const blob = result.in_zip ? (result.image ? dataUrlToBlob(result.image) : null) : source;
    addCell(result.name, blob, result.status === 200 ? result : null, result.status === 200 ? null : result.error);
  }
}

async function addFiles(fileList) {
  const files = [...fileList];
  if (!files.length || !state.model) return;
  const progress = $("#progress");
  progress.classList.remove("error");
  try {
    await sendInBatches(files, state.model.limits, {
      progress, send: sendBatch, refuse: (file, reason) => addCell(file.name, null, null, reason),
      after: () => { state.dirty = true; render(); },
    });
    const s = summarize(state.cells, state.model);
    progress.textContent = `${s.n_cells} cell(s) classified` + (s.n_failed ? `, ${s.n_failed} could not be read.` : ".");
  } catch (error) {
    progress.textContent = error.message;
    progress.classList.add("error");
  }
  render();
}

// ---- panels --------------------------------------------------------------------------------------------------------
function renderModel() {
  const m = state.model;
  const t = m.calibration.temperature;
  $("#model-line").textContent = `${m.arch} · ${m.classes.length} classes · ${m.backend} backend · ` +
    `cells under ${percent(m.review_threshold)} confidence go to review`;
  const cal = m.calibration;
  const rows = [
    ["Run", m.run ?? "–"], ["Architecture", `${m.arch} at ${m.img_size} px`], ["Backend", m.backend],
    ["Calibration", `T = ${t.toFixed(2)}` + (cal.ece_before != null ? `, ECE ${cal.ece_before.toFixed(3)} → ${cal.ece_after.toFixed(3)}` : "")],
    ["Review under", percent(m.review_threshold)], ["Critical", m.critical_classes.join(", ") || "none"],
    ["Out of domain", m.out_of_domain ? `${m.out_of_domain.method} over ${m.out_of_domain.threshold.toPrecision(4)}`
      : "not fitted (neunn screen fit out-of-domain)"],
    ["Cell-type gate", m.cell_type_gate ? `${m.cell_type_gate.scope.join(", ")} of ${m.cell_type_gate.classes.length} types`
      : "none"],
    ["Pallor screen", m.pallor_screen ? `${m.pallor_screen.finding} at pallor ≥ ${m.pallor_screen.threshold.toFixed(3)}`
      : "none"],
  ];
  if (m.validation?.val_macro_f1 != null) rows.push(["Val macro-F1", m.validation.val_macro_f1.toFixed(3)]);
  if (m.test_metrics?.accuracy != null) rows.push(["Test accuracy", percent(m.test_metrics.accuracy)]);
  facts($("#model-facts"), rows);
  $("#synthetic-banner").hidden = !m.synthetic_data;
}

/** The summary as the review stands: a critical class's row is marked once it has identified cells. */
function renderSummary() {
  const m = state.model;
  const s = summarize(state.cells, m);
  showSummary(s, m, { critical: s.alert.counts, criticalRows: m.critical_classes.filter((c) => s.counts[c] > 0),
                      warning: s.domain_warning, decided: "reviewed" });
  $("#sum-failed").textContent = s.n_failed;
  return s;
}

function render() {
  if (!state.model) return;
  renderSummary();
  for (const button of document.querySelectorAll(".filter")) {
    const count = state.cells.filter(FILTERS[button.dataset.filter]).length;
    button.querySelector("span").textContent = count;
    button.classList.toggle("active", button.dataset.filter === state.filter);
  }
  for (const cell of state.cells) updateTile(cell);
  const any = state.cells.length > 0;
  $("#empty").hidden = any;
  $("#export-csv").disabled = $("#export-json").disabled = $("#new-sample").disabled = !any;
  const bulk = state.cells.filter((c) => FILTERS[state.filter](c) && bulkConfirmable(c, state.model)).length;
  $("#confirm-shown").disabled = !bulk;
  $("#confirm-shown").textContent = bulk ? `Confirm ${bulk} unflagged shown` : "Confirm unflagged shown";
}

// ---- exports and controls ------------------------------------------------------------------------------------------
function download(text, name, type) {
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  state.dirty = false;
}

function newSample() {
  if (state.dirty && !confirm("Start a new sample? The current review has not been exported.")) return;
  for (const cell of state.cells) if (cell.url) URL.revokeObjectURL(cell.url);
  forgetCells();
  state.cells = [];
  state.dirty = false;
  $("#grid").replaceChildren();
  $("#sample-id").value = "";
  $("#progress").textContent = "";
  render();
}

function wireControls() {
  wireFileDrop($("#file-input"), $("#dropzone"), addFiles);
  for (const button of document.querySelectorAll(".filter")) {
    button.addEventListener("click", () => { state.filter = button.dataset.filter; render(); });
  }
  $("#alert-show").addEventListener("click", () => { state.filter = "critical"; render(); });
  $("#domain-show").addEventListener("click", () => { state.filter = "ood"; render(); });
  $("#confirm-shown").addEventListener("click", () => {
    for (const c of state.cells.filter((c) => FILTERS[state.filter](c) && bulkConfirmable(c, state.model))) {
      c.reviewed = true; c.final = modelCall(c);
    }
    state.dirty = true;
    render();
  });
  const sampleId = () => $("#sample-id").value.trim();
  $("#export-csv").addEventListener("click", () =>
    download(toCsv(exportRows(state.cells, state.model, sampleId())), exportName(sampleId(), "csv"), "text/csv"));
  $("#export-json").addEventListener("click", () =>
    download(toJson(state.cells, state.model, sampleId()), exportName(sampleId(), "json"), "application/json"));
  $("#new-sample").addEventListener("click", newSample);
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    credentials.token = $("#token-input").value.trim();
    sessionStorage.setItem("neunn-token", credentials.token);
    $("#token-form").hidden = true;
    start();
  });
  window.addEventListener("beforeunload", (e) => { if (state.dirty && state.cells.length) e.preventDefault(); });
}

async function start() {
  try {
    await loadModel();
    render();
  } catch (error) {
    $("#model-line").textContent = error.message;
  }
}

readToken();
onAuthFailure({ unauthorized: askForToken });
onCellChange(() => { state.dirty = true; render(); });
wireControls();
start();
