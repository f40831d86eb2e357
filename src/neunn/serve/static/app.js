// NeuNN review page: upload a sample's cells, see the model's calls, correct them, export the reviewed sample.
// Plain JavaScript modules, no build step; the only network traffic is this server's /api/v1 (no CDN, works offline).
// Images stay in the browser's memory; the server keeps nothing; exports are downloads made here.
import {
  UNIDENTIFIED, UNIDENTIFIED_TEXT, exportName, exportRows, isClassified, isCorrected, isCritical, modelCall,
  needsReview, standing, summarize, toCsv, toJson,
} from "./review.js";

const state = { model: null, cells: [], filter: "all", token: null, nextId: 1, dirty: false, heatmaps: true };
const $ = (selector) => document.querySelector(selector);
const percent = (p) => `${Math.round(p * 100)}%`;
const FILTERS = {
  all: () => true, review: needsReview, critical: (c) => isCritical(c, state.model), corrected: isCorrected,
  error: (c) => !isClassified(c),
};

// ---- server access -------------------------------------------------------------------------------------------------
function readToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("neunn-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname); // keep the token out of the address bar and history
  }
  state.token = sessionStorage.getItem("neunn-token");
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), ...(state.token ? { Authorization: `Bearer ${state.token}` } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("#token-form").hidden = false;
    $("#token-input").focus();
    throw new Error("This server needs an access token: enter it above.");
  }
  return response;
}

async function errorOf(response) {
  try { return (await response.json()).error || `HTTP ${response.status}`; } catch { return `HTTP ${response.status}`; }
}

async function loadModel() {
  const response = await api("/api/v1/model");
  if (!response.ok) throw new Error(await errorOf(response));
  state.model = await response.json();
  renderModel();
  renderSummary();
}

// ---- uploading -----------------------------------------------------------------------------------------------------
async function isZipFile(file) {
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  return head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5);
}

/** Requests that respect the server's limits, in the files' order: each zip alone, images grouped by count and bytes;
 *  a file too large for any request becomes a group of its own that is never sent. */
async function batches(files) {
  const { max_files: maxFiles, max_request_bytes: maxBytes } = state.model.limits;
  const groups = [];
  let current = [], bytes = 0;
  const flush = () => { if (current.length) groups.push({ files: current }); current = []; bytes = 0; };
  for (const file of files) {
    const alone = file.size > maxBytes * 0.9 ? "too large for one request" : (await isZipFile(file)) ? null : undefined;
    if (alone !== undefined) { flush(); groups.push({ files: [file], error: alone }); continue; }
    if (current.length >= Math.min(maxFiles, 64) || bytes + file.size > maxBytes * 0.8) flush();
    current.push(file); bytes += file.size;
  }
  flush();
  return groups;
}

function dataUrlToBlob(url) {
  const [head, data] = url.split(",");
  const bytes = Uint8Array.from(atob(data), (ch) => ch.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5, head.indexOf(";")) });
}

function addCell(name, blob, result, error) {
  const cell = { id: state.nextId++, name, blob, url: blob ? URL.createObjectURL(blob) : null, result, error,
                 final: null, reviewed: false, heat: {}, heatOn: false };
  state.cells.push(cell);
  $("#grid").append(buildTile(cell));
}

async function sendBatch(files) {
  const form = new FormData();
  files.forEach((file) => form.append("files", file, file.name));
  const response = await api("/api/v1/predict?include_images=true", { method: "POST", body: form });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
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
    let sent = 0;
    for (const group of await batches(files)) {
      progress.textContent = `Classifying ${sent + 1}–${sent + group.files.length} of ${files.length} file(s)…`;
      if (group.error) addCell(group.files[0].name, null, null, group.error);
      else await sendBatch(group.files);
      sent += group.files.length;
      state.dirty = true;
      render();
    }
    const s = summarize(state.cells, state.model);
    progress.textContent = `${s.n_cells} cell(s) classified` + (s.n_failed ? `, ${s.n_failed} could not be read.` : ".");
  } catch (error) {
    progress.textContent = error.message;
    progress.classList.add("error");
  }
  render();
}

// ---- tiles ---------------------------------------------------------------------------------------------------------
function classOptions(select) {
  const model = state.model;
  for (const c of model.display_order) select.append(new Option(`${c} · ${model.class_names[c]}`, c));
  select.append(new Option("Unidentified", UNIDENTIFIED));
}

function buildTile(cell) {
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

function updateTile(cell, tile = tileOf(cell)) {
  if (!tile) return;
  const critical = isCritical(cell, state.model);
  const { label, unidentified } = isClassified(cell) ? standing(cell) : {};
  tile.classList.toggle("error", !isClassified(cell));
  tile.classList.toggle("critical", critical);
  tile.classList.toggle("review", needsReview(cell));
  tile.classList.toggle("reviewed", cell.reviewed);
  const badge = tile.querySelector(".badge");
  if (!isClassified(cell)) badge.textContent = "Unreadable";
  else if (cell.reviewed) badge.textContent = `${unidentified ? "Unidentified" : label} ✓${isCorrected(cell) ? " corrected" : ""}`;
  else badge.textContent = (critical ? "⚠ " : "") + (unidentified ? UNIDENTIFIED_TEXT : label);
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
  state.dirty = true;
  if (cell.heatOn) showHeatmap(cell, false).then(() => showHeatmap(cell, true)); // the explained class may change
  updateTile(cell);
  render();
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

// ---- panels --------------------------------------------------------------------------------------------------------
function renderModel() {
  const m = state.model;
  const t = m.calibration.temperature;
  $("#model-line").textContent = `${m.arch} · ${m.classes.length} classes · ${m.backend} backend · ` +
    `cells under ${percent(m.review_threshold)} confidence go to review`;
  const cal = m.calibration;
  const facts = [
    ["Run", m.run ?? "–"], ["Architecture", `${m.arch} at ${m.img_size} px`], ["Backend", m.backend],
    ["Calibration", `T = ${t.toFixed(2)}` + (cal.ece_before != null ? `, ECE ${cal.ece_before.toFixed(3)} → ${cal.ece_after.toFixed(3)}` : "")],
    ["Review under", percent(m.review_threshold)], ["Critical", m.critical_classes.join(", ") || "none"],
  ];
  if (m.validation?.val_macro_f1 != null) facts.push(["Val macro-F1", m.validation.val_macro_f1.toFixed(3)]);
  if (m.test_metrics?.accuracy != null) facts.push(["Test accuracy", percent(m.test_metrics.accuracy)]);
  const list = $("#model-facts");
  list.replaceChildren(...facts.flatMap(([k, v]) => [
    Object.assign(document.createElement("dt"), { textContent: k }),
    Object.assign(document.createElement("dd"), { textContent: v })]));
  $("#synthetic-banner").hidden = !m.synthetic_data;
}

function renderSummary() {
  const m = state.model;
  const s = summarize(state.cells, m);
  const rows = m.display_order.map((c) => {
    const tr = document.createElement("tr");
    tr.classList.toggle("critical", m.critical_classes.includes(c) && s.counts[c] > 0);
    tr.title = m.class_names[c];
    tr.innerHTML = `<th><span class="code"></span> <span class="cname"></span></th><td class="num"></td><td class="num"></td>`;
    tr.querySelector(".code").textContent = c;
    tr.querySelector(".cname").textContent = m.class_names[c] === c ? "" : m.class_names[c];
    tr.children[1].textContent = s.counts[c];
    tr.children[2].textContent = s.n_identified ? percent(s.shares[c]) : "–";
    const bar = Object.assign(document.createElement("span"), { className: "share" });
    bar.style.width = percent(s.shares[c]);
    tr.children[0].append(bar);
    return tr;
  });
  $("#summary tbody").replaceChildren(...rows);
  $("#sum-unidentified").textContent = s.n_unidentified;
  $("#sum-abnormal").textContent = s.abnormal_share == null || !s.n_identified ? "–" : percent(s.abnormal_share);
  $("#sum-failed").textContent = s.n_failed;
  $("#reviewed-count").textContent = s.n_cells ? `· ${s.n_reviewed} of ${s.n_cells} reviewed` : "";
  $("#alert").hidden = !s.alert.critical;
  $("#alert-text").textContent = s.alert.message ? s.alert.message.replace(/^Critical finding: /, "") : "";
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
  $("#confirm-shown").disabled = !state.cells.some((c) => FILTERS[state.filter](c) && isClassified(c) && !c.reviewed);
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
  for (const cell of state.cells) [cell.url, ...Object.values(cell.heat)].forEach((u) => u && URL.revokeObjectURL(u));
  state.cells = [];
  state.dirty = false;
  $("#grid").replaceChildren();
  $("#sample-id").value = "";
  $("#progress").textContent = "";
  render();
}

function wireControls() {
  const input = $("#file-input");
  input.addEventListener("change", () => { addFiles(input.files).then(() => { input.value = ""; }); });
  const zone = $("#dropzone");
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); addFiles(e.dataTransfer.files); });
  for (const button of document.querySelectorAll(".filter")) {
    button.addEventListener("click", () => { state.filter = button.dataset.filter; render(); });
  }
  $("#alert-show").addEventListener("click", () => { state.filter = "critical"; render(); });
  $("#confirm-shown").addEventListener("click", () => {
    for (const c of state.cells.filter((c) => FILTERS[state.filter](c) && isClassified(c) && !c.reviewed)) {
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
    state.token = $("#token-input").value.trim();
    sessionStorage.setItem("neunn-token", state.token);
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
wireControls();
start();
