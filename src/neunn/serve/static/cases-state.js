// Shared state of the case pages, and what a stored cell is in the review's terms (review bin, out of domain,
// critical, corrected), following neunn/cases/casework.py (flagged, critical) and review.js (the bins and badges).
import { callBadge } from "./core-tiles.js";
import { UNIDENTIFIED } from "./review.js";

/** The reviewer's call for a cell that cannot be classified (neunn/cases/casework.py UNIDENTIFIED). */
export const UNIDENTIFIED_DECISION = "unidentified";
export const UNIDENTIFIED_DECISION_TEXT = "Unidentified (cannot be classified)";

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

export const isDecided = (c) => c.final_label != null;
export const isWaiting = (c) => c.flagged && !isDecided(c);
export const inReviewBin = (c) => !isDecided(c) && c.needs_review && !c.out_of_domain;
export const isOutOfDomain = (c) => !isDecided(c) && Boolean(c.out_of_domain);
export const isCorrected = (c) => isDecided(c) && c.final_label !== c.predicted_label;

export const FILTERS = {
  all: () => true, waiting: isWaiting, review: inReviewBin, ood: isOutOfDomain, critical: (c) => c.critical,
  corrected: isCorrected,
};

/** The cell in the shape review.js's summarize() reads (the reviewer's decision, else the model's call). */
export function asReviewCell(c) {
  return { error: null, result: { label: c.predicted_label, needs_review: c.needs_review, out_of_domain: c.out_of_domain },
           reviewed: isDecided(c), final: c.final_label === UNIDENTIFIED_DECISION ? UNIDENTIFIED : c.final_label };
}

/** The badge over a cell's image: the decision, else the model's call worded as on the one-sample page. */
export function badgeText(c) {
  if (c.final_label === UNIDENTIFIED_DECISION) return "Unidentified ✓";
  if (isDecided(c)) return `${c.critical ? "⚠ " : ""}${c.final_label} ✓${isCorrected(c) ? " corrected" : ""}`;
  return callBadge(c, c.label, c.critical);
}

export const isSigned = () => state.caseRow?.status === "signed";
