"""Conformal prediction sets: for each cell, the classes that a split-conformal calibration cannot rule out at level
α; a cell whose set is not a single class goes to review.

    sets = ConformalSets.read(run)          # None when the run has none
    sets.prediction_set(probs)               # ("NEU",) or ("NEU", "HYP") or (): the classes kept for one cell

Fitted by ``neunn screen fit conformal RUN --alpha 0.05`` (neunn.training.conformal_fit) on the run's validation
cells, scored by the run's own Predictor as in use. Each calibration cell's nonconformity is 1 − its calibrated
probability of its true class; the threshold is the ⌈(n + 1)(1 − α)⌉-th smallest of the n scores, and a class is in a
cell's set when 1 − its probability is at or under it. On cells exchangeable with the calibration cells the set then
holds the true class with probability at least 1 − α (Vovk et al. 2005; Angelopoulos & Bates 2021), so at most about
α of all cells are wrong and let through as a single-class set. ``class_conditional`` thresholds each class on its own
calibration cells, so that a rare class keeps its own coverage instead of paying for a common one (it needs a few
calibration cells of every class: a class with fewer than ⌈1/α⌉ − 1 gets every set that could hold it). The
guarantee is about cells like the calibration cells: on another laboratory's cells it does not hold until the sets
are fitted again on that laboratory's cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from neunn.inference.screens.base import JsonFileScreen, ScreenBatch, ScreenCall


def conformal_threshold(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile: the ⌈(n + 1)(1 − α)⌉-th smallest score, or 1 (keep every class) when n is too
    small for that rank."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(scores) + 1) * (1 - alpha))
    return 1.0 if rank > len(scores) else float(scores[rank - 1])


@dataclass(frozen=True)
class ConformalSets(JsonFileScreen):
    """The level α, whether each class has its own threshold, the thresholds, and the calibration cells' counts."""

    alpha: float
    class_conditional: bool
    classes: tuple[str, ...]
    thresholds: tuple[float, ...]  # one per class (all equal without class_conditional)
    fitted_on: dict[str, Any]

    name = "conformal"
    title = "conformal prediction set"
    effect = "review"
    value_field = "prediction_set"
    value_type = str
    flag_field = "set_not_single"
    csv_column = "prediction_set"
    run_file = "conformal_file"

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> ConformalSets:
        return cls(**{**data, "classes": tuple(data["classes"]), "thresholds": tuple(data["thresholds"])})

    def prediction_set(self, probs: np.ndarray) -> tuple[str, ...]:
        """The classes kept for one cell's calibrated probabilities, likeliest first."""
        order = np.argsort(-np.asarray(probs))
        return tuple(self.classes[i] for i in order if 1.0 - probs[i] <= self.thresholds[i] + 1e-12)

    def call(self, batch: ScreenBatch) -> list[ScreenCall]:
        calls = []
        for probs in batch.probs:
            kept = self.prediction_set(probs)
            calls.append(ScreenCall("|".join(kept), len(kept) != 1, {"set": list(kept)}))
        return calls
