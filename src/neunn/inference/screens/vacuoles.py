"""The vacuole finder: round pale spots located in the cytoplasm (:mod:`neunn.data.cytoplasm_findings`), counted and
measured, and a small linear model of those measurements (and the cytoplasm's pallor) that scores each cell.

    finder = VacuoleFinder.read(run)            # None when the run has none
    features, spots, outline = measure_cell(rgb) # per cell, on the full-resolution image
    finder.score(features)                       # in [0, 1]; at or over ``threshold``: vacuoles may be there

A cell scored at or over the threshold that the model did not call the finding goes to review, with the spots it was
scored on (position, radius, contrast) and the outlines of the cell and its nucleus (pixel positions) in its call's
``detail``, so that the page can mark them on the tile: "3 vacuoles" with marks inside the outlined cytoplasm is
something a reviewer confirms at a glance. The model is a logistic regression on standardised
features, fitted on the run's own training and validation cells by ``neunn screen fit vacuoles`` (neunn.training.
finding_fit), and kept as JSON (``RunDir.vacuole_file``): coefficients, means and scales, never a pickle. The
threshold is chosen for a target sensitivity on out-of-fold scores of those cells, so it is not set on cells the model
was fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from neunn.data.cell_regions import FullImage
from neunn.data.cytoplasm_findings import FEATURES, measure_cell
from neunn.errors import NeunnError
from neunn.inference.screens.base import JsonFileScreen, ScreenBatch, ScreenCall

MAX_MARKS = 12  # spots kept in a call's detail (strongest first): enough to mark a tile, small enough to store


@dataclass(frozen=True)
class FindingModel:
    """A logistic regression on standardised features: P(finding) = σ(intercept + Σ coef · (x − mean) / scale)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] of an N×F array of features in ``features`` order."""
        z = (np.asarray(rows, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def score(self, features: dict[str, float]) -> float:
        return float(self.scores(np.asarray([[features[name] for name in self.features]]))[0])


@dataclass(frozen=True)
class VacuoleFinder(JsonFileScreen):
    """The finding it looks for, its model, the score at or over which a cell is flagged, and how that was chosen."""

    finding: str
    model: FindingModel
    threshold: float
    target_sensitivity: float
    fitted_on: dict[str, Any]

    name = "vacuole_finder"
    title = "vacuole finder"
    effect = "review"
    value_field = "vacuole_score"
    value_type = float
    flag_field = "vacuoles_found"
    csv_column = "vacuole_score"
    needs_image = True
    run_file = "vacuole_file"

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> VacuoleFinder:
        model = FindingModel(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("model").items()})
        check_features(model)
        return cls(model=model, **data)

    def prepare(self, cell: FullImage, source, transformed: bool) -> tuple[dict[str, float], list, dict]:
        return measure_cell(cell.rgb, cell.regions)

    def call(self, batch: ScreenBatch) -> list[ScreenCall]:
        calls = []
        for features, spots, outline in batch.prepared:
            score = self.model.score(features)
            calls.append(ScreenCall(score, score >= self.threshold, {
                "n_spots": len(spots), "spots": [s.as_dict() for s in spots[:MAX_MARKS]], "outline": outline}))
        return calls

    def acts(self, call: ScreenCall, label: str) -> bool:
        return call.flagged and label != self.finding

    @classmethod
    def csv_value(cls, call: ScreenCall | None) -> str:
        return "" if call is None else f"{call.value:.4f}"



def check_features(model: FindingModel) -> None:
    """A model of features this version measures (an older or newer file may name others)."""
    unknown = [name for name in model.features if name not in FEATURES]
    if unknown or not all(math.isfinite(v) for v in (*model.coef, model.intercept)):
        raise NeunnError(f"The vacuole finder's model names features this version does not measure ({unknown}); fit "
                         "it again with `neunn screen fit vacuoles`.")
