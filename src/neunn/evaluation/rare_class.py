"""Figures for one rare class against all the others: ROC AUC, average precision, the precision-recall curve and an
operating point, each with a bootstrap interval over the cells.

    choice = choose_threshold(val_scores, val_is_positive, target_sensitivity=0.9)   # on validation cells only
    figures = rare_class_report(y_true, probs, classes, "vacuolated", choice=choice)  # measured on the test cells
    print(format_rare_class(figures))

The operating point is a probability of the positive class at or above which a cell is called positive. It is chosen on
validation cells, as the highest threshold that still reaches the target sensitivity there, and then measured on the
test cells, where its sensitivity may well fall short of the target: that is what it would do in use. ``thresholds``
may instead give one threshold per cell (pooled cross-validation: each fold's own threshold on its own test cells).

The default positive class (:func:`default_positive_class`): with a two-class model, the class with fewer cells in the
evaluated set, which is the one whose figures accuracy hides; a tie, or a model with more classes, has no default and
the class must be named. Figures that are undefined (no positive cell, no negative cell) are None, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from neunn.errors import NeunnError
from neunn.evaluation.intervals import (
    LEVEL,
    N_BOOT,
    Ranking,
    bootstrap,
    percentile_interval,
    safe_ratio,
    weighted_roc_auc,
)
from neunn.evaluation.metric_results import Interval
from neunn.evaluation.metrics import check_predictions, interval_text, roc_auc_one_vs_rest


def default_positive_class(classes: Sequence[str], labels: Sequence[int]) -> str | None:
    """The rarer class of a two-class model in the evaluated labels; None for a tie or more than two classes."""
    if len(classes) != 2:
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)
    return None if counts[0] == counts[1] else classes[int(counts.argmin())]


def resolve_positive(classes: Sequence[str], labels: Sequence[int], positive: str | None,
                     target_sensitivity: float | None) -> str | None:
    """The class to report rare-class figures for (``positive``, else the default), after checking the options."""
    if target_sensitivity is not None and not 0.0 < target_sensitivity <= 1.0:
        raise NeunnError(f"The target sensitivity must be a fraction in (0, 1], got {target_sensitivity}.")
    if positive is not None:
        if positive not in classes:
            raise NeunnError(f"Positive class '{positive}' is not one of the model's classes ({', '.join(classes)}).")
        return positive
    default = default_positive_class(classes, labels)
    if default is None and target_sensitivity is not None:
        raise NeunnError("A target sensitivity needs a positive class: name it with --positive CLASS.")
    return default


def weighted_average_precision(ranking: Ranking, is_positive: np.ndarray,
                               counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average precision of each resample, sum over thresholds of (recall gained) x precision, and whether defined."""
    pos, neg = (side[:, ::-1] for side in ranking.grouped(counts, is_positive))  # highest scores first
    precision = safe_ratio(np.cumsum(pos, axis=1), np.cumsum(pos + neg, axis=1))
    total = pos.sum(axis=1)
    return safe_ratio((pos * precision).sum(axis=1), total), total > 0


def average_precision(scores: np.ndarray, is_positive: np.ndarray) -> float | None:
    """Average precision of scores for a binary target (sklearn's average_precision_score), None without positives."""
    scores = np.asarray(scores, dtype=np.float64)
    value, defined = weighted_average_precision(Ranking.of(scores), is_positive, np.ones((1, scores.size)))
    return float(value[0]) if defined[0] else None


def precision_recall_curve(scores: np.ndarray, is_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, threshold) at every distinct score, highest threshold first; a cell is called at >= it."""
    scores, is_positive = np.asarray(scores, dtype=np.float64), np.asarray(is_positive, dtype=bool)
    ranking = Ranking.of(scores)
    pos, neg = (side[0, ::-1] for side in ranking.grouped(np.ones((1, scores.size)), is_positive))
    true_positives = np.cumsum(pos)
    precision = true_positives / np.cumsum(pos + neg)
    recall = safe_ratio(true_positives, pos.sum())
    return precision, recall, scores[ranking.order][ranking.starts][::-1]


def _rates(called: np.ndarray, is_positive: np.ndarray) -> dict[str, float | None]:
    """Sensitivity and specificity of a yes/no call, None where a side has no cell."""
    return {"sensitivity": float(called[is_positive].mean()) if is_positive.any() else None,
            "specificity": float((~called[~is_positive]).mean()) if (~is_positive).any() else None}


def choose_threshold(scores: np.ndarray, is_positive: np.ndarray, target_sensitivity: float, *,
                     chosen_on: str = "the validation split") -> dict[str, Any]:
    """The highest threshold reaching the target sensitivity on these (validation) cells, and what it gives there."""
    scores, is_positive = np.asarray(scores, dtype=np.float64), np.asarray(is_positive, dtype=bool)
    positive_scores = np.sort(scores[is_positive])[::-1]
    choice = {"target_sensitivity": target_sensitivity, "threshold": None, "chosen_on": chosen_on,
              "validation": {"n": int(scores.size), "n_positive": int(positive_scores.size), "sensitivity": None,
                             "specificity": None}}
    if positive_scores.size:
        # The needed-th highest positive score keeps at least `needed` positives; any higher threshold keeps fewer.
        needed = math.ceil(target_sensitivity * positive_scores.size - 1e-9)
        choice["threshold"] = float(positive_scores[needed - 1])
        choice["validation"].update(_rates(scores >= choice["threshold"], is_positive))
    return choice


def _figure(value: float | None, samples: tuple[np.ndarray, np.ndarray], level: float) -> dict[str, Any]:
    """A point value with its interval; no interval when the value itself is undefined."""
    if value is None:
        return {"value": None, "low": None, "high": None, "resamples": 0}
    return {"value": value, **percentile_interval(*samples, level)}


def operating_point(scores: np.ndarray, is_positive: np.ndarray, thresholds: float | np.ndarray, *,
                    n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict[str, Any]:
    """Sensitivity, specificity and precision of calling cells positive at scores >= thresholds, with intervals."""
    is_positive = np.asarray(is_positive, dtype=bool)
    called = np.asarray(scores, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64)
    outcomes = np.stack([called & is_positive, ~called & is_positive, called & ~is_positive, ~called & ~is_positive],
                        axis=1).astype(np.float64)  # tp, fn, fp, tn per cell

    def rates(counts: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        tp, fn, fp, tn = (counts @ outcomes).T
        return {"sensitivity": (safe_ratio(tp, tp + fn), tp + fn > 0),
                "specificity": (safe_ratio(tn, tn + fp), tn + fp > 0),
                "precision": (safe_ratio(tp, tp + fp), tp + fp > 0)}

    point = {name: float(v[0]) if d[0] else None for name, (v, d) in rates(np.ones((1, called.size))).items()}
    samples = bootstrap(rates, called.size, n_boot=n_boot, seed=seed)
    tp, fn, fp, tn = (int(c) for c in outcomes.sum(axis=0))
    return {**{name: _figure(point[name], samples[name], level) for name in point},
            "counts": {"tp": tp, "fn": fn, "fp": fp, "tn": tn}}


def rare_class_report(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str], positive: str, *,
                      choice: dict[str, Any] | None = None, thresholds: float | np.ndarray | None = None,
                      n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict[str, Any]:
    """ROC AUC and average precision of ``positive`` against the rest and, given a threshold ``choice`` (from
    :func:`choose_threshold`, or pooled over folds with per-cell ``thresholds``), its operating point on these cells."""
    labels, probs = check_predictions(y_true, probs, classes)
    if positive not in classes:
        raise NeunnError(f"Positive class '{positive}' is not one of the classes ({', '.join(classes)}).")
    scores, is_positive = probs[:, list(classes).index(positive)], labels == list(classes).index(positive)
    ranking = Ranking.of(scores)
    samples = bootstrap(lambda counts: {"roc_auc": weighted_roc_auc(ranking, is_positive, counts),
                                        "average_precision": weighted_average_precision(ranking, is_positive, counts)},
                        labels.size, n_boot=n_boot, seed=seed)
    report = {"positive": positive, "n": int(labels.size), "n_positive": int(is_positive.sum()),
              "prevalence": float(is_positive.mean()),
              "roc_auc": _figure(roc_auc_one_vs_rest(scores, is_positive), samples["roc_auc"], level),
              "average_precision": _figure(average_precision(scores, is_positive), samples["average_precision"],
                                           level),
              "operating_point": None}
    if choice is not None:
        at = thresholds if thresholds is not None else choice.get("threshold")
        test = None if at is None else operating_point(scores, is_positive, at, n_boot=n_boot, seed=seed, level=level)
        report["operating_point"] = {**choice, "test": test}
    return report


def figure_text(figure: dict[str, Any]) -> str:
    """'85.7 [57.1, 100.0]' (percent) for a figure with its interval, 'n/a' when undefined."""
    if figure["value"] is None:
        return "n/a"
    return f"{100 * figure['value']:.1f} {interval_text(Interval.from_json(figure))}".rstrip()


def format_rare_class(report: dict[str, Any]) -> str:
    """Plain-text summary (percent, with 95 % intervals) of a rare_class_report."""
    name = report["positive"]
    lines = [f"rare class '{name}': {report['n_positive']} of {report['n']} cells ({100 * report['prevalence']:.1f} %)",
             f"  {'ROC AUC':<20}{figure_text(report['roc_auc'])}",
             f"  {'average precision':<20}{figure_text(report['average_precision'])}"
             f"  (always answering '{name}' gives {100 * report['prevalence']:.1f})"]
    point = report["operating_point"]
    if point is None:
        return "\n".join(lines)
    lines.append(f"  {threshold_sentence(point, name)}")
    for key, figure, hit, total in operating_point_counts(point["test"]):
        lines.append(f"  {key:<20}{figure_text(figure):<22}({hit} of {total})")
    return "\n".join(lines)


def operating_point_counts(test: dict[str, Any] | None) -> list[tuple[str, dict[str, Any], int, int]]:
    """(name, figure, cells it got right, cells it counts) for the sensitivity, specificity and precision measured at
    an operating point; empty when there is none."""
    if test is None:
        return []
    c = test["counts"]
    return [("sensitivity", test["sensitivity"], c["tp"], c["tp"] + c["fn"]),
            ("specificity", test["specificity"], c["tn"], c["tn"] + c["fp"]),
            ("precision", test["precision"], c["tp"], c["tp"] + c["fp"])]


def threshold_sentence(point: dict[str, Any], name: str) -> str:
    """How the operating point's threshold was chosen, in one line (for the report and the printed summary)."""
    target = f"sensitivity >= {100 * point['target_sensitivity']:g} %"
    if point["threshold"] is not None:
        n = point["validation"]["n_positive"]
        return (f"threshold {point['threshold']:.3f}: the highest giving {target} on {point['chosen_on']} "
                f"({n} '{name}' cell{'' if n == 1 else 's'})")
    folds = point.get("folds") or []
    if folds and all(f["threshold"] is not None for f in folds):
        values = ", ".join(f"{f['threshold']:.3f}" for f in folds)
        return f"thresholds {values} (one per fold): each the highest giving {target} on {point['chosen_on']}"
    return f"no threshold for {target}: a validation split had no '{name}' cell"
