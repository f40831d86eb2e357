"""Classification metrics of the NeuNN paper, defined exactly and computed with plain numpy.

Use ``compute_metrics(y_true, probs, classes)`` after evaluation: it returns a
:class:`~neunn.evaluation.metric_results.MetricResults` (``None`` where a value is undefined, never NaN) that
``format_metrics_table`` prints, ``neunn.evaluation.report`` renders and ``to_json()`` turns into the metrics of
``metrics.json``. ``metrics_from_predictions_csv`` recomputes the same results from a ``predictions.csv`` so anyone can
check a ``metrics.json`` without the model.

Conventions, chosen to equal scikit-learn so results can be cross-checked:

* ``y_pred = argmax(probs)``; per-class metrics are one-vs-rest over all ``classes``.
* A ratio whose denominator is zero is 0.0 (scikit-learn's ``zero_division=0``): e.g. the precision of a class that is
  never predicted, or the sensitivity of a class absent from ``y_true``.
* ROC AUC of a class is ``None`` when ``y_true`` lacks positives or negatives for it; its macro and weighted
  averages use the classes where it is defined.
* ``balanced_accuracy`` is the mean sensitivity over the classes present in ``y_true`` (as
  ``sklearn.metrics.balanced_accuracy_score``); the macro sensitivity averages over all classes.
* ``mcc`` is the multiclass Matthews correlation (Gorodkin's R_K), equal to ``sklearn.metrics.matthews_corrcoef``.

The paper (Barrera et al. 2024) reports sensitivity 94.0 with accuracy 94.3. The support-weighted sensitivity (recall)
always equals accuracy, so the paper's sensitivity must be a macro average: reports put the paper's figures beside the
macro column.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from neunn.errors import NeunnError
from neunn.evaluation.metric_results import (
    Averages,
    ClassMetrics,
    Interval,
    MetricResults,
    OverallMetrics,
)


@dataclass(frozen=True)
class Metric:
    """One headline metric: its key in ``metrics.json``, its labels, its kind and the paper's figure."""

    key: str
    label: str  # short, for tables and column heads
    title: str  # long, for the report's rows
    per_class: bool  # True: one-vs-rest per class, with macro and weighted averages; False: one overall number
    paper: float | None = None  # Barrera et al., Comput. Biol. Med. 2024, on the NeuNN test set (a fraction)


# The one metric table: metrics.json, the printed table and the HTML report all read it, in this order.
METRICS = (
    Metric("accuracy", "accuracy", "Accuracy", False, 0.943),
    Metric("sensitivity", "sensitivity", "Sensitivity (recall)", True, 0.940),
    Metric("specificity", "specificity", "Specificity", True, 0.991),
    Metric("precision", "precision", "Precision", True, 0.943),
    Metric("f1", "F1", "F1 score", True, 0.943),
    Metric("jaccard", "Jaccard", "Jaccard index", True, 0.896),
    Metric("mcc", "MCC", "MCC", False, 0.936),
    Metric("roc_auc", "ROC AUC", "ROC AUC (one-vs-rest)", True),
    Metric("balanced_accuracy", "balanced accuracy", "Balanced accuracy", False),
    Metric("ece", "ECE", "Expected calibration error", False),
)
PAPER_METRICS = {m.key: m.paper for m in METRICS if m.paper is not None}
PER_CLASS_KEYS = tuple(m.key for m in METRICS if m.per_class)
# Rows probabilities are rounded when written to CSV, so the sum-to-one check is loose on purpose: it catches logits
# or unnormalised scores, not rounding.
PROB_SUM_TOLERANCE = 1e-2
ECE_BINS = 15


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Return the n_classes x n_classes count matrix, rows = true class, columns = predicted class."""
    true = np.asarray(y_true, dtype=np.int64).ravel()
    pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if true.shape != pred.shape:
        raise NeunnError(f"y_true has {true.size} labels but y_pred has {pred.size}.")
    for name, labels in (("y_true", true), ("y_pred", pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise NeunnError(f"{name} contains a label outside 0..{n_classes - 1}.")
    flat = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def confidence_bins(confidence: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Index of the equal-width bin (lo, hi] on [0, 1] holding each confidence: the bins of the ECE."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") puts a confidence equal to an edge into the bin that the edge closes.
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def expected_calibration_error(probs: np.ndarray, y_true: Sequence[int], n_bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error with n_bins equal-width confidence bins (lo, hi] on [0, 1]."""
    probs = np.asarray(probs, dtype=np.float64)
    true = np.asarray(y_true, dtype=np.int64).ravel()
    if probs.ndim != 2 or probs.shape[0] != true.size or true.size == 0:
        raise NeunnError("probs must be a non-empty (n_samples, n_classes) array with one row per label.")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == true).astype(np.float64)
    bins = confidence_bins(confidence, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    # Sum of |sum(correct - confidence)| per bin / N  ==  sum_b (n_b / N) * |acc_b - conf_b|.
    return float(np.abs(gap[counts > 0]).sum() / true.size)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Return 1-based ranks of values, ties sharing their average rank (like scipy's rankdata 'average')."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    group_end = np.cumsum(counts)
    average_rank = group_end - (counts - 1) / 2.0
    return average_rank[inverse.ravel()]


def roc_auc_one_vs_rest(scores: np.ndarray, is_positive: np.ndarray) -> float | None:
    """Return the ROC AUC of scores for a binary target via the Mann-Whitney U statistic, None if undefined."""
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos = int(is_positive.sum())
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    u_statistic = ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def roc_curve_points(scores: np.ndarray, is_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (false positive rates, true positive rates) of a one-vs-rest ROC curve, from (0, 0) to (1, 1)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    true_positives = np.cumsum(is_positive[order])
    false_positives = np.arange(1, order.size + 1) - true_positives
    # One point per distinct threshold: the last index of each run of equal scores.
    last_of_run = np.r_[np.diff(sorted_scores) != 0, True]
    tps = np.r_[0, true_positives[last_of_run]]
    fps = np.r_[0, false_positives[last_of_run]]
    n_pos, n_neg = max(int(is_positive.sum()), 1), max(int((~is_positive).sum()), 1)
    return fps / n_neg, tps / n_pos


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise division that gives 0.0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _multiclass_mcc(matrix: np.ndarray) -> float:
    """Gorodkin's multiclass Matthews correlation from a confusion matrix (0.0 when undefined, as scikit-learn)."""
    m = matrix.astype(np.float64)
    true_counts, pred_counts = m.sum(axis=1), m.sum(axis=0)
    n, correct = m.sum(), np.trace(m)
    covariance = correct * n - true_counts @ pred_counts
    denominator = math.sqrt((n * n - pred_counts @ pred_counts) * (n * n - true_counts @ true_counts))
    return float(covariance / denominator) if denominator > 0 else 0.0


def check_predictions(y_true: Sequence[int], probs: np.ndarray,
                      classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels, probs) as arrays after checking shapes, label range and that rows are probabilities."""
    labels = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(classes)
    if len(set(classes)) != n_classes or n_classes < 2:
        raise NeunnError("classes must list at least two distinct class names.")
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise NeunnError(f"probs must have shape (n_samples, {n_classes}), one column per class, not {probs.shape}.")
    if labels.ndim != 1 or labels.shape[0] != probs.shape[0] or labels.size == 0:
        raise NeunnError(f"y_true must hold one label per probs row ({probs.shape[0]}), and at least one.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= n_classes:
        raise NeunnError(f"y_true must hold integer class indices between 0 and {n_classes - 1}.")
    if not np.all(np.isfinite(probs)) or probs.min() < 0:
        raise NeunnError("probs must be finite and non-negative.")
    if np.abs(probs.sum(axis=1) - 1.0).max() > PROB_SUM_TOLERANCE:
        raise NeunnError("Each row of probs must sum to 1 (apply softmax to the logits first).")
    return labels.astype(np.int64), probs


def _weighted_mean(values: list[float | None], weights: np.ndarray) -> float | None:
    """Weighted mean over the entries that are not None, or None when no entry with weight remains."""
    keep = [i for i, v in enumerate(values) if v is not None]
    total = float(weights[keep].sum()) if keep else 0.0
    return float(sum(values[i] * weights[i] for i in keep) / total) if total > 0 else None


def compute_metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> MetricResults:
    """Return overall, macro, support-weighted and per-class metrics, ECE and the confusion matrix.

    Zero-denominator ratios are 0.0 and undefined ROC AUCs are None (see the module docstring).
    """
    labels, probs = check_predictions(y_true, probs, classes)
    n_classes = len(classes)
    matrix = confusion_matrix(labels, probs.argmax(axis=1), n_classes)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    fn, fp = support - tp, predicted - tp
    tn = labels.size - tp - fn - fp
    per_metric = {
        "sensitivity": _safe_divide(tp, tp + fn).tolist(),
        "specificity": _safe_divide(tn, tn + fp).tolist(),
        "precision": _safe_divide(tp, tp + fp).tolist(),
        "f1": _safe_divide(2 * tp, 2 * tp + fp + fn).tolist(),
        "jaccard": _safe_divide(tp, tp + fp + fn).tolist(),
        "roc_auc": [roc_auc_one_vs_rest(probs[:, k], labels == k) for k in range(n_classes)],
    }
    uniform = np.ones(n_classes)
    present = support > 0
    return MetricResults(
        classes=tuple(classes),
        n=int(labels.size),
        overall=OverallMetrics(
            accuracy=float(tp.sum() / labels.size),
            balanced_accuracy=float(np.mean(_safe_divide(tp, support)[present])),
            mcc=_multiclass_mcc(matrix),
            macro=Averages(**{key: _weighted_mean(values, uniform) for key, values in per_metric.items()}),
            weighted=Averages(**{key: _weighted_mean(values, support) for key, values in per_metric.items()}),
            ece=expected_calibration_error(probs, labels),
        ),
        per_class={name: ClassMetrics(**{key: per_metric[key][k] for key in PER_CLASS_KEYS}, support=int(support[k]))
                   for k, name in enumerate(classes)},
        confusion_matrix=tuple(tuple(row) for row in matrix.tolist()),
    )


def _percent(value: float | None) -> str:
    """Format a fraction as a percentage with one decimal, or 'n/a' when undefined."""
    return "n/a" if value is None else f"{100 * value:.1f}"


def interval_text(interval: Interval | None) -> str:
    """'[95.1, 98.9]' (percent) for a bootstrap interval, '' when there is none or it is undefined."""
    if interval is None or interval.low is None:
        return ""
    return f"[{100 * interval.low:.1f}, {100 * interval.high:.1f}]"


def headline_rows(results: MetricResults) -> list[tuple[Metric, float | None, float | None]]:
    """(metric, macro value, weighted value) for every metric of :data:`METRICS`; an overall number (accuracy, MCC,
    balanced accuracy, ECE) is the macro value, with None as weighted."""
    overall = results.overall
    return [(m, overall.macro.value(m.key), overall.weighted.value(m.key)) if m.per_class
            else (m, overall.value(m.key), None) for m in METRICS]


def headline_intervals(results: MetricResults) -> list[tuple[Interval | None, Interval | None]]:
    """The bootstrap intervals of :func:`headline_rows`, row for row (macro, weighted); None where there is none."""
    if results.intervals is None:
        return [(None, None) for _ in METRICS]
    overall = results.intervals.overall
    return [(overall.macro.value(m.key), overall.weighted.value(m.key)) if m.per_class
            else (overall.value(m.key), None) for m in METRICS]


def format_metrics_table(results: MetricResults, *, warnings: Sequence[str] = (), with_paper: bool = True) -> str:
    """Return a plain-text table (percent) of the headline metrics: macro, weighted and, optionally, the paper's;
    ``warnings`` (metrics.json's) above it and, when the results have them, each value's bootstrap interval."""
    iv = results.intervals
    width = 22 if iv is not None else 10
    header = f"{'metric (%)':<18}{'macro':>{width}}{'weighted':>{width}}" + (f"{'paper':>8}" if with_paper else "")
    lines = [f"warning: {w}" for w in warnings] + [header, "-" * len(header)]
    for (metric, macro, weighted), (macro_ci, weighted_ci) in zip(headline_rows(results), headline_intervals(results)):
        cells = [f"{_percent(value)} {interval_text(ci)}".rstrip() for value, ci in ((macro, macro_ci),
                                                                                     (weighted, weighted_ci))]
        line = f"{metric.label:<18}{cells[0]:>{width}}{'' if weighted is None else cells[1]:>{width}}"
        if with_paper:
            line += f"{'' if metric.paper is None else _percent(metric.paper):>8}"
        lines.append(line.rstrip())
    lines.append(f"n = {results.n} images, {len(results.classes)} classes")
    if iv is not None:
        lines[-1] += (f"; [ ] = {100 * iv.level:.0f} % bootstrap interval over {iv.n_boot} resamples of the "
                      f"cells (seed {iv.seed})")
        if iv.fewest_resamples < iv.n_boot:
            lines[-1] += f"; resamples where a figure is undefined are skipped (fewest kept: {iv.fewest_resamples})"
    return "\n".join(lines)


def read_predictions_csv(path: str | Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Read a predictions.csv (columns path, true, pred, prob_<CLASS>...): paths, classes (the order of the prob_
    columns), true class indices and the N×C probabilities. The pred column is not trusted."""
    path = Path(path)
    if not path.is_file():
        raise NeunnError(f"Predictions file {path} does not exist.")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        prob_columns = [c for c in columns if c.startswith("prob_")]
        if "true" not in columns or len(prob_columns) < 2:
            raise NeunnError(f"{path} needs a 'true' column and one 'prob_<CLASS>' column per class.")
        classes = [c[len("prob_"):] for c in prob_columns]
        index_of = {name: k for k, name in enumerate(classes)}
        paths, labels, rows = [], [], []
        for line_number, record in enumerate(reader, start=2):
            if record["true"] not in index_of:
                raise NeunnError(f"{path} line {line_number}: true class {record['true']!r} has no prob_ column.")
            labels.append(index_of[record["true"]])
            paths.append(record.get("path", str(line_number)))
            try:
                rows.append([float(record[c]) for c in prob_columns])
            except (TypeError, ValueError):
                raise NeunnError(f"{path} line {line_number}: a probability is missing or not a number.") from None
    if not rows:
        raise NeunnError(f"{path} has no prediction rows.")
    return paths, classes, np.asarray(labels, dtype=np.int64), np.asarray(rows)


def metrics_from_predictions_csv(path: str | Path) -> MetricResults:
    """Recompute compute_metrics from a predictions.csv; predictions are re-derived as argmax of the probabilities."""
    _, classes, labels, probs = read_predictions_csv(path)
    return compute_metrics(labels, probs, classes)
