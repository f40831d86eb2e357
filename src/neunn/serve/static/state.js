// Shared state of the review page, and the cell filters its toolbar offers.
import { isClassified, isCorrected, isCritical, isOutOfDomain, needsReview } from "./review.js";

export const state = { model: null, cells: [], filter: "all", nextId: 1, dirty: false };
export const FILTERS = {
  all: () => true, review: needsReview, ood: (c) => isOutOfDomain(c) && !c.reviewed,
  critical: (c) => isCritical(c, state.model), corrected: isCorrected, error: (c) => !isClassified(c),
};
