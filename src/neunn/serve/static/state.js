// Shared state of the review page, and the small helpers every module uses.
import { isClassified, isCorrected, isCritical, isOutOfDomain, needsReview } from "./review.js";

export const state = { model: null, cells: [], filter: "all", token: null, nextId: 1, dirty: false, heatmaps: true };
export const $ = (selector) => document.querySelector(selector);
export const percent = (p) => `${Math.round(p * 100)}%`;
export const FILTERS = {
  all: () => true, review: needsReview, ood: (c) => isOutOfDomain(c) && !c.reviewed,
  critical: (c) => isCritical(c, state.model), corrected: isCorrected, error: (c) => !isClassified(c),
};

