// The review's logic, free of the page: what a cell's label is after review, the sample summary, and the exports.
// The summary follows the definitions of neunn/serve/results.py (sample_summary) so the page and the API agree:
// shares are of identified cells, the abnormal share is identified cells not of the normal class, a cell outside the
// model's experience has a bin of its own (it wins over the review bin), many such cells warn about the whole sample,
// and a cell of a critical class raises the alert even while it waits in either bin (until a reviewer says otherwise).

export const UNIDENTIFIED = "UNID";
export const UNIDENTIFIED_TEXT = "Unidentified — review";
export const OUT_OF_DOMAIN = "OOD";
export const OUT_OF_DOMAIN_TEXT = "Outside the model's experience";
/** A reviewer's call that a cell is not a neutrophil: counted apart, out of the shares (cases/differential.py). */
export const OTHER_CELL_TYPE = "OTHER";

/** The model's own call for a cell: its class, OUT_OF_DOMAIN when it is unlike the training cells, or UNIDENTIFIED
 *  when its confidence is under the threshold. */
export function modelCall(cell) {
  if (cell.result.out_of_domain) return OUT_OF_DOMAIN;
  return cell.result.needs_review ? UNIDENTIFIED : cell.result.label;
}

/** {label, unidentified, outOfDomain, otherCellType} of a cell as it stands: the reviewer's decision if any, else the
 *  model's. */
export function standing(cell) {
  const none = { label: null, unidentified: false, outOfDomain: false, otherCellType: false };
  if (cell.reviewed) {
    if (cell.final === UNIDENTIFIED) return { ...none, unidentified: true };
    if (cell.final === OUT_OF_DOMAIN) return { ...none, outOfDomain: true };
    if (cell.final === OTHER_CELL_TYPE) return { ...none, otherCellType: true };
    return { ...none, label: cell.final };
  }
  const outOfDomain = Boolean(cell.result.out_of_domain);
  return { ...none, label: cell.result.label, unidentified: !outOfDomain && Boolean(cell.result.needs_review),
           outOfDomain };
}

export function isClassified(cell) { return !cell.error; }
export function isCritical(cell, model) {
  return isClassified(cell) && model.critical_classes.includes(standing(cell).label);
}
export function isCorrected(cell) { return isClassified(cell) && cell.reviewed && cell.final !== modelCall(cell); }
export function needsReview(cell) { return isClassified(cell) && !cell.reviewed && standing(cell).unidentified; }
export function isOutOfDomain(cell) { return isClassified(cell) && standing(cell).outOfDomain; }
/** Whether one action may confirm this cell with others: classified, undecided, neither flagged nor critical. */
export function bulkConfirmable(cell, model) {
  return isClassified(cell) && !cell.reviewed && !cell.result.needs_review && !cell.result.out_of_domain &&
    !model.critical_classes.includes(cell.result.label);
}

/** The sentence of the critical alert, as results.critical_message words it. */
export function criticalMessage(counts, model) {
  const parts = Object.entries(counts).map(([c, n]) => {
    const name = model.class_names[c] && model.class_names[c] !== c ? ` (${model.class_names[c]})` : "";
    return `${n} cell${n === 1 ? "" : "s"} ${c}${name}`;
  });
  return `Critical finding: ${parts.join(", ")}; confirm and report at once.`;
}

/** The sample's warning when many of its cells are outside the model's experience, as results.domain_warning. */
export function domainWarning(nOutOfDomain, nCells, model) {
  const { min_cells: minCells, min_share: minShare } = model.ood_warning;
  const share = nCells ? nOutOfDomain / nCells : 0;
  const warning = nOutOfDomain >= minCells && share >= minShare;
  const percentText = `${Math.round(share * 100)}%`;
  const message = warning ? `${nOutOfDomain} of ${nCells} cells (${percentText}) are outside the model's ` +
    "experience: this sample may come from another laboratory, stain or scanner than the model was trained on; " +
    "review every cell and validate the model on such samples before relying on it." : null;
  return { warning, n: nOutOfDomain, share, message, min_cells: minCells, min_share: minShare };
}

/** Counts, shares, unidentified, out-of-domain and other-cell-type counts, abnormal share, critical alert and out-of-domain warning of
 *  the sample's classified cells. */
export function summarize(cells, model) {
  const counts = Object.fromEntries(model.classes.map((c) => [c, 0]));
  const critical = Object.fromEntries([...model.critical_classes].sort().map((c) => [c, 0]));
  let nCells = 0, nUnidentified = 0, nOutOfDomain = 0, nOther = 0;
  for (const cell of cells.filter(isClassified)) {
    const { label, unidentified, outOfDomain, otherCellType } = standing(cell);
    nCells += 1;
    if (label in critical) critical[label] += 1;
    if (otherCellType) nOther += 1;
    else if (outOfDomain) nOutOfDomain += 1;
    else if (unidentified) nUnidentified += 1;
    else if (label in counts) counts[label] += 1;
  }
  const identified = nCells - nUnidentified - nOutOfDomain - nOther;
  const shares = Object.fromEntries(Object.entries(counts).map(([c, n]) => [c, identified ? n / identified : 0]));
  const normal = model.normal_class;
  const abnormal = normal ? (identified ? (identified - counts[normal]) / identified : 0) : null;
  const found = Object.fromEntries(Object.entries(critical).filter(([, n]) => n > 0));
  const alert = Object.keys(found).length > 0;
  return {
    n_cells: nCells, n_identified: identified, n_unidentified: nUnidentified, n_out_of_domain: nOutOfDomain,
    n_other_cell_type: nOther, counts, shares, abnormal_share: abnormal,
    alert: { critical: alert, counts: found, message: alert ? criticalMessage(found, model) : null },
    domain_warning: domainWarning(nOutOfDomain, nCells, model),
    n_failed: cells.length - nCells, n_reviewed: cells.filter((c) => isClassified(c) && c.reviewed).length,
  };
}

function labelText(label) {
  if (label === UNIDENTIFIED) return "Unidentified";
  if (label === OTHER_CELL_TYPE) return "Other cell type";
  return label === OUT_OF_DOMAIN ? OUT_OF_DOMAIN_TEXT : label;
}

/** One exported row per cell: the model's call, the reviewer's decision and the final class. */
export function exportRows(cells, model, sampleId) {
  return cells.map((cell) => {
    if (!isClassified(cell)) {
      return { sample_id: sampleId, file: cell.name, status: "unreadable", model_class: "", model_probability: "",
               model_top3: "", model_unidentified: "", model_out_of_domain: "", reviewed: "", final_class: "",
               corrected: "", critical: "", error: cell.error };
    }
    const r = cell.result;
    const final = cell.reviewed ? cell.final : modelCall(cell);
    return {
      sample_id: sampleId, file: cell.name, status: cell.reviewed ? "reviewed" : "not reviewed",
      model_class: r.label, model_probability: r.probability.toFixed(4),
      model_top3: r.top.map((t) => `${t.label}:${t.probability.toFixed(4)}`).join(" "),
      model_unidentified: r.needs_review ? "yes" : "no",
      model_out_of_domain: r.out_of_domain == null ? "" : r.out_of_domain ? "yes" : "no",
      reviewed: cell.reviewed ? "yes" : "no",
      final_class: labelText(final), corrected: isCorrected(cell) ? "yes" : "no",
      critical: isCritical(cell, model) ? "yes" : "no", error: "",
    };
  });
}

function csvField(value) {
  let text = String(value ?? "");
  if (/^[=+\-@\t\r]/.test(text)) text = "'" + text; // a file name must never run as a spreadsheet formula
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(rows) {
  if (!rows.length) return "";
  const header = Object.keys(rows[0]);
  return [header, ...rows.map((row) => header.map((k) => row[k]))].map((r) => r.map(csvField).join(",")).join("\r\n")
    + "\r\n";
}

export function toJson(cells, model, sampleId) {
  return JSON.stringify({
    sample_id: sampleId, exported_at: new Date().toISOString(),
    model: { run: model.run ?? null, arch: model.arch, backend: model.backend, classes: model.classes,
             temperature: model.calibration.temperature, review_threshold: model.review_threshold,
             critical_classes: model.critical_classes, out_of_domain: model.out_of_domain ?? null },
    summary: summarize(cells, model),
    cells: exportRows(cells, model, sampleId).map((row, i) => ({ ...row, model_probabilities: cells[i].result?.probabilities ?? null })),
  }, null, 1);
}

/** A file name for an export: the sample ID (letters, digits, - and _ only) and the time. */
export function exportName(sampleId, extension, now = new Date()) {
  const id = (sampleId || "sample").replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, 60) || "sample";
  const pad = (n) => String(n).padStart(2, "0");
  const stamp = `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}`;
  return `neunn_${id}_${stamp}.${extension}`;
}
