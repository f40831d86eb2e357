"""Bootstrap confidence intervals for every headline metric of :data:`neunn.evaluation.metrics.METRICS`.

    intervals = bootstrap_intervals(y_true, probs, classes, n_boot=1000, seed=0)   # MetricIntervals
    results = replace(compute_metrics(y_true, probs, classes), intervals=intervals)  # laid out as the metrics
    intervals.overall.accuracy              # Interval(low=0.951, high=0.989, resamples=1000)
    intervals.per_class["GBI"].sensitivity

The evaluated cells are drawn with replacement ``n_boot`` times (seeded: the same call gives the same intervals), every
metric is recomputed on each resample, and the interval holds the central ``level`` share of those values (percentile
bootstrap). It says how far a figure could move with another sample of cells like these, scored by the same model; it
does not cover another training run.

A resample is a row of a (resamples, cells) matrix counting how often each cell was drawn, so every metric becomes a
weighted count: the confusion matrices of a chunk of resamples are a few matrix products, and ROC AUC is a weighted
Mann-Whitney count over the cells sorted once per class (ties count one half, as in compute_metrics). AUC is about two
thirds of the time and the whole still takes seconds (measured: 12,000 cells, 7 classes, 1,000 resamples in about 5 s
on a shared 2-core CPU), so it is bootstrapped like the rest rather than left without an interval.

Undefined values: a metric whose denominator is already zero on the evaluated cells (the precision of a class never
predicted, the sensitivity of an absent class, MCC when one class is always predicted) has no interval (None). A
resample where a metric loses a denominator that the evaluated cells have (a rare class not drawn at all) is skipped
for that metric, and ``resamples`` says how many were used. Macro and weighted averages keep compute_metrics'
convention (a zero-denominator ratio counts as 0) for classes that are already zero on the evaluated cells, so they
bootstrap the very number that is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from neunn.errors import NeunnError
from neunn.evaluation.metric_results import Interval, MetricIntervals, OneVsRestIntervals, OverallIntervals
from neunn.evaluation.metrics import ECE_BINS, check_predictions, confidence_bins

N_BOOT = 1000
LEVEL = 0.95
CHUNK = 64  # resamples drawn at once: a (64, 12,000) count matrix is 6 MB
METHOD = "percentile bootstrap over cells"

Samples = dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (values, defined), stacked over resamples
Statistic = Callable[[np.ndarray], Samples]


def resample_counts(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n cells, in chunks: (resamples, n) float matrices of how often each cell was drawn."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, CHUNK):
        size = min(CHUNK, n_boot - start)
        draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        yield np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def bootstrap(statistic: Statistic, n: int, *, n_boot: int = N_BOOT, seed: int = 0) -> Samples:
    """Evaluate ``statistic(counts) -> {name: (values, defined)}`` on every resample, stacked over resamples."""
    if n < 1 or n_boot < 1:
        raise NeunnError(f"A bootstrap needs at least one cell and one resample, got {n} and {n_boot}.")
    parts = [statistic(counts) for counts in resample_counts(n, n_boot, seed)]
    return {name: (np.concatenate([p[name][0] for p in parts]), np.concatenate([p[name][1] for p in parts]))
            for name in parts[0]}


def percentile_interval(values: np.ndarray, defined: np.ndarray, level: float = LEVEL) -> dict[str, Any]:
    """The central ``level`` share of the values where ``defined`` holds, and how many there were (None if none)."""
    kept = np.asarray(values, dtype=np.float64)[np.asarray(defined, dtype=bool)]
    if kept.size == 0:
        return {"low": None, "high": None, "resamples": 0}
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(kept, [tail, 100.0 - tail])
    return {"low": float(low), "high": float(high), "resamples": int(kept.size)}


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0.0 where the denominator is 0 (compute_metrics' convention)."""
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) != 0)
    return out


@dataclass(frozen=True)
class Ranking:
    """Cells sorted by one score, ascending, and where each run of tied scores starts; made once per score."""

    order: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray) -> Ranking:
        """The ranking of a 1-D array of scores."""
        scores = np.asarray(scores, dtype=np.float64)
        order = np.argsort(scores, kind="stable")
        return cls(order, np.r_[0, np.flatnonzero(np.diff(scores[order])) + 1])

    def grouped(self, counts: np.ndarray, is_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Drawn positives and negatives per distinct score, ascending: two (resamples, distinct scores) matrices."""
        drawn, positive = counts[:, self.order], np.asarray(is_positive, dtype=bool)[self.order]
        pos = np.add.reduceat(drawn * positive, self.starts, axis=1)
        return pos, np.add.reduceat(drawn, self.starts, axis=1) - pos


def weighted_roc_auc(ranking: Ranking, is_positive: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC of each resample (Mann-Whitney, ties count one half) and whether it is defined (both kinds drawn)."""
    pos, neg = ranking.grouped(counts, is_positive)
    negatives_below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    return safe_ratio((pos * (negatives_below + 0.5 * neg)).sum(axis=1), pairs), pairs > 0


def _ratio_parts(matrices: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(numerator, denominator) of each one-vs-rest ratio of compute_metrics, per class, for (b, C, C) matrices."""
    tp = np.diagonal(matrices, axis1=1, axis2=2)
    support, predicted = matrices.sum(axis=2), matrices.sum(axis=1)
    fn, fp = support - tp, predicted - tp
    tn = matrices.sum(axis=(1, 2))[:, None] - tp - fn - fp
    return {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp), "precision": (tp, tp + fp),
            "f1": (2 * tp, 2 * tp + fp + fn), "jaccard": (tp, tp + fp + fn)}


def _mcc(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gorodkin's multiclass MCC per matrix (0.0 where undefined) and its denominator."""
    true, pred = matrices.sum(axis=2), matrices.sum(axis=1)
    n, correct = matrices.sum(axis=(1, 2)), np.trace(matrices, axis1=1, axis2=2)
    denominator = np.sqrt((n * n - (pred * pred).sum(axis=1)) * (n * n - (true * true).sum(axis=1)))
    return safe_ratio(correct * n - (true * pred).sum(axis=1), denominator), denominator


def _averages(name: str, values: np.ndarray, defined: np.ndarray, *, required: np.ndarray, cover: np.ndarray,
              support: np.ndarray) -> Samples:
    """Per-class, macro and support-weighted samples of one per-class metric: the averages run over the ``cover``
    classes and count a resample only when every ``required`` class is defined in it."""
    complete = np.all(defined[:, required], axis=1) & cover.any()
    weights = support * cover
    return {f"class.{name}": (values, defined),
            f"macro.{name}": (safe_ratio((values * cover).sum(axis=1), cover.sum()), complete),
            f"weighted.{name}": (safe_ratio((values * weights).sum(axis=1), weights.sum(axis=1)), complete)}


def headline_statistic(labels: np.ndarray, probs: np.ndarray) -> Statistic:
    """The statistic that recomputes every metric of METRICS on a chunk of resamples (counts: (b, n))."""
    n_classes = probs.shape[1]
    pred = probs.argmax(axis=1)
    one_hot_pred = np.eye(n_classes)[pred]
    by_true = [np.flatnonzero(labels == k) for k in range(n_classes)]
    confidence = probs.max(axis=1)
    ece_gaps = np.zeros((labels.size, ECE_BINS))
    ece_gaps[np.arange(labels.size), confidence_bins(confidence, ECE_BINS)] = (pred == labels) - confidence
    rankings = [Ranking.of(probs[:, k]) for k in range(n_classes)]
    full = np.ones((1, labels.size))
    full_support = np.bincount(labels, minlength=n_classes).astype(np.float64)
    has_auc = (full_support > 0) & (full_support < labels.size)  # compute_metrics averages AUC over these only
    every_class = np.ones(n_classes, dtype=bool)

    def matrices_of(counts: np.ndarray) -> np.ndarray:
        return np.stack([counts[:, idx] @ one_hot_pred[idx] for idx in by_true], axis=1)

    full_parts = _ratio_parts(matrices_of(full))
    full_mcc_defined = _mcc(matrices_of(full))[1][0] > 0

    def statistic(counts: np.ndarray) -> Samples:
        matrices = matrices_of(counts)
        support, n, b = matrices.sum(axis=2), counts.sum(axis=1), counts.shape[0]
        tp = np.diagonal(matrices, axis1=1, axis2=2)
        samples: Samples = {}
        for name, (numerator, denominator) in _ratio_parts(matrices).items():
            exists = full_parts[name][1][0] > 0  # a class whose ratio is 0 by convention on the cells stays so
            samples.update(_averages(name, safe_ratio(numerator, denominator), denominator > 0, required=exists,
                                     cover=every_class, support=support))
        aucs = [weighted_roc_auc(rankings[k], labels == k, counts) for k in range(n_classes)]
        samples.update(_averages("roc_auc", np.stack([a for a, _ in aucs], axis=1),
                                 np.stack([d for _, d in aucs], axis=1), required=has_auc, cover=has_auc,
                                 support=support))
        present = full_support > 0
        mcc, mcc_denominator = _mcc(matrices)
        samples.update({
            "accuracy": (tp.sum(axis=1) / n, np.ones(b, dtype=bool)),
            "balanced_accuracy": (safe_ratio(tp, support)[:, present].mean(axis=1),
                                  np.all(support[:, present] > 0, axis=1)),
            "mcc": (mcc, (mcc_denominator > 0) & full_mcc_defined),
            "ece": (np.abs(counts @ ece_gaps).sum(axis=1) / n, np.ones(b, dtype=bool)),
        })
        return samples

    return statistic


def bootstrap_intervals(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str], *, n_boot: int = N_BOOT,
                        seed: int = 0, level: float = LEVEL) -> MetricIntervals:
    """Percentile bootstrap intervals of every metric of METRICS, laid out as compute_metrics lays out the metrics."""
    if not 0.0 < level < 1.0:
        raise NeunnError(f"The interval level must be a fraction between 0 and 1, got {level}.")
    labels, probs = check_predictions(y_true, probs, classes)
    samples = bootstrap(headline_statistic(labels, probs), labels.size, n_boot=n_boot, seed=seed)

    def interval(name: str, column: int | None = None) -> Interval:
        values, defined = samples[name]
        if column is not None:
            values, defined = values[:, column], defined[:, column]
        return Interval.from_json(percentile_interval(values, defined, level))

    def one_vs_rest(prefix: str, column: int | None = None) -> OneVsRestIntervals:
        return OneVsRestIntervals(**{key: interval(f"{prefix}.{key}", column) for key in OneVsRestIntervals.keys()})

    overall = OverallIntervals(**{key: interval(key) for key in OverallIntervals.SINGLE},
                               macro=one_vs_rest("macro"), weighted=one_vs_rest("weighted"))
    per_class = {name: one_vs_rest("class", k) for k, name in enumerate(classes)}
    unfilled = MetricIntervals(level=level, n_boot=n_boot, seed=seed, method=METHOD, fewest_resamples=0,
                               overall=overall, per_class=per_class)
    return replace(unfilled, fewest_resamples=min((iv.resamples for iv in unfilled.every_interval() if iv.resamples),
                                                  default=0))
