"""Fit a run's finding screens on its own training and validation cells: the cells measured once, a linear model of
their measurements, and the threshold for a target sensitivity.

    cells = measure_run_cells("runs/vac", "vacuolated", measure)     # values and whether each cell is the finding
    finder = fit_vacuole_finder("runs/vac", finding="vacuolated", target_sensitivity=0.9)   # runs/vac/vacuoles.json
    model = fit_finding_model(features, is_positive)                  # a FindingModel (logistic regression)

Nothing here learns from the model's own calls: the measurements are label-free (neunn.data), so the run's training
cells are as fair a ground for the screen as its validation cells, and there are more of them. The threshold is
chosen on out-of-fold scores (each cell scored by a model fitted without it), not on the scores of the cells a model
was fitted on. Unreadable cells are skipped and named.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neunn.data.cytoplasm_findings import FEATURES, measure_vacuoles
from neunn.data.image_io import UnreadableImage, load_rgb
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.evaluation.rare_class import choose_threshold
from neunn.inference.screens.vacuoles import FindingModel, VacuoleFinder
from neunn.log import progress, say
from neunn.rundir import RunDir

INNER_FOLDS = 5  # folds of the out-of-fold scores the threshold is chosen on
C = 1.0  # the logistic regression's inverse regularisation: fixed, not tuned on the few positives there are


@dataclass
class MeasuredCells:
    """What a measure gave for each readable training and validation cell of a run, and which cells are the finding."""

    values: list[Any]
    positive: np.ndarray
    paths: list[str]


def check_target(target_sensitivity: float) -> None:
    if not 0.0 < target_sensitivity <= 1.0:
        raise NeunnError(f"The target sensitivity must be in (0, 1], got {target_sensitivity}.")


def measure_run_cells(run: RunDir, finding: str, measure: Callable[[np.ndarray], Any], *, workers: int = 2,
                      desc: str = "measure", show_progress: bool = True) -> MeasuredCells:
    """``measure`` of every training and validation cell of the run (full-size RGB), on ``workers`` threads."""
    run.require_trained()
    split = load_split(run.splits)
    if finding not in split.classes:
        raise NeunnError(f"'{finding}' is not a class of {run.root}; its classes are {', '.join(split.classes)}.")
    data_dir = run.read_info().get("data_dir")
    if not data_dir or not Path(data_dir).is_dir():
        raise NeunnError(f"A screen is fitted on the run's training images, and its dataset {data_dir} is not "
                         "available; run it where the data is.")
    entries = [e for name in ("train", "val") for e in split.splits[name]]

    def one(entry) -> Any:
        try:
            return measure(np.asarray(load_rgb(Path(data_dir) / entry.path).image))
        except UnreadableImage as exc:
            return exc

    cells = MeasuredCells([], np.zeros(0, dtype=bool), [])
    positive = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        measured = progress(pool.map(one, entries), total=len(entries), desc=desc, enabled=show_progress)
        for entry, value in zip(entries, measured):
            if isinstance(value, UnreadableImage):
                say(f"  skipped {entry.path}: {value}")
                continue
            cells.values.append(value)
            cells.paths.append(entry.path)
            positive.append(entry.label == finding)
    cells.positive = np.asarray(positive, dtype=bool)
    if not cells.positive.any():
        raise NeunnError(f"The run's training and validation splits hold no readable '{finding}' cell to fit on.")
    return cells


def fit_finding_model(rows: np.ndarray, is_positive: np.ndarray, features: tuple[str, ...] = FEATURES) -> FindingModel:
    """A class-balanced logistic regression on standardised features (scikit-learn), as plain numbers."""
    from sklearn.linear_model import LogisticRegression  # imported here: only fitting needs it

    rows = np.asarray(rows, dtype=np.float64)
    mean, scale = rows.mean(axis=0), rows.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    fitted = LogisticRegression(C=C, class_weight="balanced", max_iter=1000).fit((rows - mean) / scale, is_positive)
    return FindingModel(tuple(features), tuple(map(float, mean)), tuple(map(float, scale)),
                        tuple(map(float, fitted.coef_[0])), float(fitted.intercept_[0]))


def out_of_fold_scores(rows: np.ndarray, is_positive: np.ndarray, *, folds: int = INNER_FOLDS,
                       seed: int = 0) -> np.ndarray:
    """Each cell's score by a model fitted on the other folds (stratified), for choosing a threshold fairly."""
    from sklearn.model_selection import StratifiedKFold

    rows, is_positive = np.asarray(rows, dtype=np.float64), np.asarray(is_positive, dtype=bool)
    folds = max(2, min(folds, int(is_positive.sum()), int((~is_positive).sum())))
    scores = np.zeros(len(rows))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(rows, is_positive):
        scores[test] = fit_finding_model(rows[train], is_positive[train]).scores(rows[test])
    return scores


def feature_rows(values: list[dict[str, float]]) -> np.ndarray:
    return np.asarray([[v[name] for name in FEATURES] for v in values], dtype=np.float64)


def fit_vacuole_finder(run_dir: str | Path, *, finding: str, target_sensitivity: float = 0.9, workers: int = 2,
                       show_progress: bool = True) -> VacuoleFinder:
    """Fit the vacuole finder on the run's training and validation cells; write RUN_DIR/vacuoles.json."""
    run = RunDir(Path(run_dir))
    check_target(target_sensitivity)
    cells = measure_run_cells(run, finding, lambda rgb: measure_vacuoles(rgb)[0], workers=workers,
                              desc="vacuoles", show_progress=show_progress)
    rows = feature_rows(cells.values)
    if cells.positive.sum() < 2 or (~cells.positive).sum() < 2:
        raise NeunnError(f"Fitting the vacuole finder needs at least 2 '{finding}' cells and 2 others in the run's "
                         "training and validation splits.")
    choice = choose_threshold(out_of_fold_scores(rows, cells.positive), cells.positive, target_sensitivity,
                              chosen_on="out-of-fold scores of the run's training and validation cells")
    finder = VacuoleFinder(finding, fit_finding_model(rows, cells.positive), choice["threshold"], target_sensitivity,
                           choice["validation"])
    finder.write(run)
    return finder
