// The review's logic, free of the page: what a cell's label is after review, the sample summary, and the exports.
// The summary follows the definitions of neunn/serve/results.py (sample_summary) so the page and the API agree:
// shares are of identified cells, the abnormal share is identified cells not of the normal class, and a cell of a
// critical class raises the alert even while it waits in the review bin (until a reviewer says otherwise).

export const UNIDENTIFIED = "UNID";
export const UNIDENTIFIED_TEXT = "Unidentified — review";

/** The model's own call for a cell: its class, or UNIDENTIFIED when its confidence is under the threshold. */
export function modelCall(cell) {
  return cell.result.needs_review ? UNIDENTIFIED : cell.result.label;
}

/** {label, unidentified} of a cell as it stands: the reviewer's decision if any, else the model's. */
export function standing(cell) {
  if (cell.reviewed) {
    return cell.final === UNIDENTIFIED ? { label: null, unidentified: true } : { label: cell.final, unidentified: false };
  }
  return { label: cell.result.label, unidentified: Boolean(cell.result.needs_review) };
}

export function isClassified(cell) { return !cell.error; }
export function isCritical(cell, model) {
  return isClassified(cell) && model.critical_classes.includes(standing(cell).label);
}
export function isCorrected(cell) { return isClassified(cell) && cell.reviewed && cell.final !== modelCall(cell); }
export function needsReview(cell) { return isClassified(cell) && !cell.reviewed && Boolean(cell.result.needs_review); }

/** The sentence of the critical alert, as results.critical_message words it. */
export function criticalMessage(counts, model) {
  const parts = Object.entries(counts).map(([c, n]) => {
    const name = model.class_names[c] && model.class_names[c] !== c ? ` (${model.class_names[c]})` : "";
    return `${n} cell${n === 1 ? "" : "s"} ${c}${name}`;
  });
  return `Critical finding: ${parts.join(", ")}; confirm and report at once.`;
}

/** Counts, shares, unidentified count, abnormal share and critical alert of the sample's classified cells. */
export function summarize(cells, model) {
  const counts = Object.fromEntries(model.classes.map((c) => [c, 0]));
  const critical = Object.fromEntries([...model.critical_classes].sort().map((c) => [c, 0]));
  let nCells = 0, nUnidentified = 0;
  for (const cell of cells.filter(isClassified)) {
    const { label, unidentified } = standing(cell);
    nCells += 1;
    if (label in critical) critical[label] += 1;
    if (unidentified) nUnidentified += 1;
    else if (label in counts) counts[label] += 1;
  }
  const identified = nCells - nUnidentified;
  const shares = Object.fromEntries(Object.entries(counts).map(([c, n]) => [c, identified ? n / identified : 0]));
  const normal = model.normal_class;
  const abnormal = normal ? (identified ? (identified - counts[normal]) / identified : 0) : null;
  const found = Object.fromEntries(Object.entries(critical).filter(([, n]) => n > 0));
  const alert = Object.keys(found).length > 0;
  return {
    n_cells: nCells, n_identified: identified, n_unidentified: nUnidentified, counts, shares, abnormal_share: abnormal,
    alert: { critical: alert, counts: found, message: alert ? criticalMessage(found, model) : null },
    n_failed: cells.length - nCells, n_reviewed: cells.filter((c) => isClassified(c) && c.reviewed).length,
  };
}

function labelText(label) { return label === UNIDENTIFIED ? "Unidentified" : label; }

/** One exported row per cell: the model's call, the reviewer's decision and the final class. */
export function exportRows(cells, model, sampleId) {
  return cells.map((cell) => {
    if (!isClassified(cell)) {
      return { sample_id: sampleId, file: cell.name, status: "unreadable", model_class: "", model_probability: "",
               model_top3: "", model_unidentified: "", reviewed: "", final_class: "", corrected: "", critical: "",
               error: cell.error };
    }
    const r = cell.result;
    const final = cell.reviewed ? cell.final : modelCall(cell);
    return {
      sample_id: sampleId, file: cell.name, status: cell.reviewed ? "reviewed" : "not reviewed",
      model_class: r.label, model_probability: r.probability.toFixed(4),
      model_top3: r.top.map((t) => `${t.label}:${t.probability.toFixed(4)}`).join(" "),
      model_unidentified: r.needs_review ? "yes" : "no", reviewed: cell.reviewed ? "yes" : "no",
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
             critical_classes: model.critical_classes },
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
