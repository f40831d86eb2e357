"""Two runs scored on the same cells: the accuracy difference with a paired bootstrap interval, and McNemar's test;
for one rare class, the differences in ROC AUC and average precision with paired intervals.

    a = correct_by_cell(RunDir("runs/current").evaluation("test").predictions)
    b = correct_by_cell(RunDir("runs/next").evaluation("test").predictions)
    paired_difference(a, b)   # {"n", "difference", "difference_ci95": {...}, "only_first_right", ..., "mcnemar_p"}
    paired_ranking_difference(is_vacuolated, scores_a, scores_b)   # {"roc_auc": {"difference", ...}, ...}
    paired_ranking_by_cell(scores_by_cell(csv_a, "vacuolated"), scores_by_cell(csv_b, "vacuolated"))   # by path

Two runs' intervals overlapping says little when both were scored on the same cells: the paired difference resamples
the cells once for both runs, so what the cells share cancels. The exact McNemar test looks only at the cells one run
gets right and the other wrong (a two-sided binomial test on those).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from neunn.errors import NeunnError
from neunn.evaluation.intervals import N_BOOT, Ranking, bootstrap, percentile_interval, weighted_roc_auc
from neunn.evaluation.metrics import read_predictions_csv
from neunn.evaluation.rare_class import weighted_average_precision


def scores_by_cell(predictions_csv: Path, positive: str) -> dict[str, tuple[bool, float]]:
    """Whether each cell (by path) is of class ``positive``, and the probability the run gave that class."""
    paths, classes, labels, probs = read_predictions_csv(Path(predictions_csv))
    if positive not in classes:
        raise NeunnError(f"'{positive}' is not a class of {predictions_csv}; its classes are {', '.join(classes)}.")
    k = classes.index(positive)
    return dict(zip(paths, zip((labels == k).tolist(), probs[:, k].tolist()), strict=True))


def paired_ranking_by_cell(first: dict[str, tuple[bool, float]], second: dict[str, tuple[bool, float]],
                           **kwargs: Any) -> dict[str, Any]:
    """:func:`paired_ranking_difference` of two :func:`scores_by_cell` answers, matched by cell."""
    if first.keys() != second.keys():
        raise NeunnError("The two evaluations do not score the same cells; evaluate both runs on the same split.")
    cells = sorted(first)
    if any(first[c][0] != second[c][0] for c in cells):
        raise NeunnError("The two evaluations give the same cells different labels; they are not of the same data.")
    return paired_ranking_difference(np.array([first[c][0] for c in cells]), np.array([first[c][1] for c in cells]),
                                     np.array([second[c][1] for c in cells]), **kwargs)


def correct_by_cell(predictions_csv: Path) -> dict[str, bool]:
    """Whether the run's top class was right, for each cell (by path) of an evaluation's predictions.csv."""
    paths, _, labels, probs = read_predictions_csv(Path(predictions_csv))
    return dict(zip(paths, (probs.argmax(1) == labels).tolist(), strict=True))


def paired_difference(first: dict[str, bool], second: dict[str, bool], *, n_boot: int = N_BOOT,
                      seed: int = 0) -> dict[str, Any]:
    """Second minus first on the same cells: accuracy difference, its 95 % paired bootstrap interval, McNemar's p."""
    if first.keys() != second.keys():
        raise NeunnError("The two evaluations do not score the same cells; evaluate both runs on the same split.")
    cells = sorted(first)
    x = np.array([first[c] for c in cells], dtype=np.float64)
    y = np.array([second[c] for c in cells], dtype=np.float64)
    diff = y - x
    samples = bootstrap(lambda counts: {"d": (counts @ diff / len(cells), np.ones(len(counts), dtype=bool))},
                        len(cells), n_boot=n_boot, seed=seed)
    only_first, only_second = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
    p = binomtest(only_first, only_first + only_second, 0.5).pvalue if only_first + only_second else 1.0
    return {"n": len(cells), "first_accuracy": float(x.mean()), "second_accuracy": float(y.mean()),
            "difference": float(diff.mean()), "difference_ci95": percentile_interval(*samples["d"]),
            "only_first_right": only_first, "only_second_right": only_second, "mcnemar_p": float(p)}


def paired_ranking_difference(is_positive: np.ndarray, first: np.ndarray, second: np.ndarray, *, n_boot: int = N_BOOT,
                              seed: int = 0) -> dict[str, Any]:
    """Second minus first in ROC AUC and average precision of one class's scores on the same cells, each with its
    95 % paired bootstrap interval (both rankings scored on every resample, so what the cells share cancels)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if not (is_positive.shape == first.shape == second.shape):
        raise NeunnError("The two rankings do not score the same cells; evaluate both runs on the same cells.")
    rankings = Ranking.of(first), Ranking.of(second)

    def statistic(counts: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for name, fn in (("roc_auc", weighted_roc_auc), ("average_precision", weighted_average_precision)):
            (a, a_ok), (b, b_ok) = (fn(r, is_positive, counts) for r in rankings)
            out[name] = (b - a, a_ok & b_ok)
        return out

    samples = bootstrap(statistic, len(first), n_boot=n_boot, seed=seed)
    ones = np.ones((1, len(first)))
    result = {"n": len(first), "positives": int(is_positive.sum())}
    for name, fn in (("roc_auc", weighted_roc_auc), ("average_precision", weighted_average_precision)):
        (a, _), (b, _) = (fn(r, is_positive, ones) for r in rankings)
        result[name] = {"first": float(a[0]), "second": float(b[0]), "difference": float(b[0] - a[0]),
                        "difference_ci95": percentile_interval(*samples[name])}
    return result
