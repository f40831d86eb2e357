// Shared state of the case pages, and what a stored cell is in the review's terms (review bin, out of domain,
// critical, corrected), following neunn/cases/casework.py (flagged, critical) and review.js (the bins and badges).
import { callBadge } from "./core-tiles.js";
import { OTHER_CELL_TYPE, UNIDENTIFIED } from "./review.js";

/** The reviewer's call for a cell that cannot be classified (neunn/cases/casework.py UNIDENTIFIED). */
export const UNIDENTIFIED_DECISION = "unidentified";
export const UNIDENTIFIED_DECISION_TEXT = "Unidentified (cannot be classified)";
/** The reviewer's call for a cell that is not a neutrophil (casework.py OTHER_CELL_TYPE): counted apart. */
export const OTHER_CELL_TYPE_DECISION = "other_cell_type";
export const OTHER_CELL_TYPE_DECISION_TEXT = "Other cell type (not a neutrophil)";
/** The key of each person's call on a tile (the model's classes take 1–9). */
export const DECISION_KEYS = { 0: UNIDENTIFIED_DECISION, o: OTHER_CELL_TYPE_DECISION };

/** A label as the page writes it: a person's call in words, a class by its code. */
export function labelText(label) {
  if (label === UNIDENTIFIED_DECISION) return "Unidentified";
  return label === OTHER_CELL_TYPE_DECISION ? "Other cell type" : label;
}

export const state = {
  model: null,            // GET /api/v1/model
  worklistStatus: "",     // the worklist's filter ("" = all)
  caseId: null,           // the open case
  caseRow: null,          // its worklist row (status, counts, signer…) and models
  cells: new Map(),       // cell id → the cell as the server last answered it
  busy: new Set(),        // cells whose decision is being saved
  notes: new Map(),       // cell id → {state: "saved"|"conflict"|"error", text} after the last save in this page
  mustDecide: new Set(),  // cells a refused signature named
  filter: "all",
  grouped: false,         // tiles grouped by their current class (display order), else in upload order
  audit: [],
  uploadErrors: [],
  uploading: false,
};

/** A voided cell (a wrong upload) is kept and shown, struck, but counts nowhere. */
export const isVoided = (c) => Boolean(c.voided);
export const isLive = (c) => !c.voided;
export const isDecided = (c) => c.final_label != null;
export const isWaiting = (c) => isLive(c) && c.flagged && !isDecided(c);
export const isUndecided = (c) => isLive(c) && !isDecided(c);
export const inReviewBin = (c) => isUndecided(c) && c.needs_review && !c.out_of_domain;
export const isOutOfDomain = (c) => isUndecided(c) && Boolean(c.out_of_domain);
export const isCorrected = (c) => isLive(c) && isDecided(c) && c.final_label !== c.predicted_label;
export const isCriticalCell = (c) => isLive(c) && Boolean(c.critical);

export const FILTERS = {
  all: () => true, waiting: isWaiting, review: inReviewBin, ood: isOutOfDomain, critical: isCriticalCell,
  corrected: isCorrected,
};

/** The open case's live cells (voided ones left out): what every count counts. */
export const liveCells = () => [...state.cells.values()].filter(isLive);

/** The cell in the shape review.js's summarize() reads (the reviewer's decision, else the model's call). */
export function asReviewCell(c) {
  return { error: null, result: { label: c.predicted_label, needs_review: c.needs_review, out_of_domain: c.out_of_domain },
           reviewed: isDecided(c), final: { [UNIDENTIFIED_DECISION]: UNIDENTIFIED,
                                            [OTHER_CELL_TYPE_DECISION]: OTHER_CELL_TYPE }[c.final_label] ?? c.final_label };
}

/** The badge over a cell's image: the decision, else the model's call worded as on the one-sample page. */
export function badgeText(c) {
  if (isVoided(c)) return "Voided";
  if (c.final_label === UNIDENTIFIED_DECISION) return "Unidentified ✓";
  if (c.final_label === OTHER_CELL_TYPE_DECISION) return "Other cell type ✓";
  if (isDecided(c)) return `${c.critical ? "⚠ " : ""}${c.final_label} ✓${isCorrected(c) ? " corrected" : ""}`;
  return callBadge(c, c.label, c.critical);
}

export const isSigned = () => state.caseRow?.status === "signed";
export const isVoidCase = () => state.caseRow?.status === "void";
/** Whether the open case takes no more ordinary decisions (signed: amendments only; void: nothing). */
export const isLocked = () => isSigned() || isVoidCase();
/** Whether the logged-in reviewer may sign a case with a critical finding (schema.ROLES: pathologists and admins). */
export const isPathologist = (role) => role === "pathologist" || role === "admin";
