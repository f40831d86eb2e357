"""Bootstrap intervals: each resample is the metric of the cells it drew, intervals hold the estimate and shrink with n,
undefined resamples are skipped and counted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neunn.errors import NeunnError
from neunn.evaluation.intervals import (
    bootstrap_intervals,
    headline_statistic,
    percentile_interval,
    resample_counts,
)
from neunn.evaluation.metric_results import Interval, MetricIntervals
from neunn.evaluation.metrics import METRICS, PER_CLASS_KEYS, compute_metrics
from conftest import CASES, make_case


def _resample_value(samples: dict, metric: str, average: str | None, column: int | None = None) -> tuple[float, bool]:
    """The value of a metric in the first resample of a statistic's output, and whether it is defined there."""
    name = metric if average is None else f"{average}.{metric}"
    values, defined = samples[name]
    if column is not None:
        return values[0, column], bool(defined[0, column])
    return values[0], bool(defined[0])


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_a_resample_scores_exactly_the_cells_it_drew(case: dict) -> None:
    labels, probs = make_case(**case)
    classes = [f"C{i}" for i in range(case["n_classes"])]
    statistic = headline_statistic(labels, probs)
    counts = np.random.default_rng(0).integers(0, 3, size=labels.size)
    counts[np.unique(labels, return_index=True)[1]] += 1  # every class of the sample is drawn, so all is defined
    expanded = np.repeat(np.arange(labels.size), counts)
    expected = compute_metrics(labels[expanded], probs[expanded], classes)
    samples = statistic(counts[None, :].astype(float))
    for metric in METRICS:
        if not metric.per_class:
            value, _ = _resample_value(samples, metric.key, None)
            assert value == pytest.approx(expected.overall.value(metric.key)), metric.key
            continue
        for average, averages in (("macro", expected.overall.macro), ("weighted", expected.overall.weighted)):
            value, defined = _resample_value(samples, metric.key, average)
            assert defined and value == pytest.approx(averages.value(metric.key)), (average, metric.key)
        for k, name in enumerate(classes):
            value, defined = _resample_value(samples, metric.key, "class", k)
            if expected.per_class[name].value(metric.key) is not None and defined:
                assert value == pytest.approx(expected.per_class[name].value(metric.key)), (name, metric.key)


def test_hand_made_resamples() -> None:
    # true 0,0,0,1,1,2 ; predicted 0,0,1,1,2,2 (the hand-made case of test_metrics)
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    probs = np.full((6, 3), 0.1)
    probs[np.arange(6), pred] = 0.8
    samples = headline_statistic(labels, probs)(np.array([[2.0, 0, 0, 1, 0, 1],     # cells 0, 0, 3, 5: all right
                                                           [0.0, 0, 1, 0, 3, 0]]))  # cells 2, 4, 4, 4: class C absent
    accuracy, defined = samples["accuracy"]
    assert accuracy.tolist() == [1.0, 0.0] and defined.all()
    sensitivity, defined = samples["class.sensitivity"]
    assert sensitivity[0].tolist() == [1.0, 1.0, 1.0] and defined[0].all()
    assert defined[1].tolist() == [True, True, False]  # no C cell drawn: its sensitivity is undefined there
    _, macro_defined = samples["macro.sensitivity"]
    assert macro_defined.tolist() == [True, False]  # ... so the macro average skips that resample
    precision, defined = samples["class.precision"]
    # Second resample: A never predicted (undefined), B predicted once wrongly (0/1), C predicted 3 times wrongly.
    assert defined[1].tolist() == [False, True, True] and precision[1, 1:].tolist() == [0.0, 0.0]


def test_intervals_contain_the_estimate_and_shrink_with_n() -> None:
    widths = {}
    for n in (150, 1500):
        labels, probs = make_case(seed=11, n_classes=4, n=n)
        classes = ["A", "B", "C", "D"]
        point = compute_metrics(labels, probs, classes)
        intervals = bootstrap_intervals(labels, probs, classes, n_boot=400, seed=1)
        for metric in METRICS:
            scopes = ((("macro", point.overall.macro, intervals.overall.macro),
                       ("weighted", point.overall.weighted, intervals.overall.weighted)) if metric.per_class
                      else ((None, point.overall, intervals.overall),))
            for scope, values, bounds in scopes:
                value, iv = values.value(metric.key), bounds.value(metric.key)
                if metric.key != "ece":  # the bootstrap ECE is biased upwards: |gap| only grows with noise
                    assert iv.low <= value <= iv.high, (n, scope, metric.key)
                widths[n, scope, metric.key] = iv.high - iv.low
        for name in classes:
            for key in PER_CLASS_KEYS:
                iv = intervals.per_class[name].value(key)
                assert iv.low <= point.per_class[name].value(key) <= iv.high, (n, name, key)
    for (n, scope, key), width in widths.items():
        if n == 150:
            assert widths[1500, scope, key] < width, (scope, key)


def test_accuracy_interval_matches_the_binomial_by_hand() -> None:
    # 400 cells, 360 right: the bootstrap accuracy is Binomial(400, 0.9) / 400, so the 95 % interval is close to
    # 0.9 +- 1.96 * sqrt(0.9 * 0.1 / 400) = 0.9 +- 0.0294.
    labels = np.repeat([0, 1], 200)
    probs = np.tile([0.7, 0.3], (400, 1))
    probs[200:] = [0.3, 0.7]
    probs[:20], probs[200:220] = [0.3, 0.7], [0.7, 0.3]  # 40 wrong
    iv = bootstrap_intervals(labels, probs, ["A", "B"], n_boot=4000, seed=3).overall.accuracy
    assert iv.low == pytest.approx(0.9 - 0.0294, abs=0.004)
    assert iv.high == pytest.approx(0.9 + 0.0294, abs=0.004)
    assert iv.resamples == 4000


def test_undefined_figures_have_no_interval_and_skips_are_counted() -> None:
    labels, probs = make_case(seed=1, n_classes=5, never_predicted=2, n=200)
    labels[0] = 4  # a class with a single cell: missing from about 37 % of resamples
    labels[labels == 4] = np.r_[4, np.zeros((labels == 4).sum() - 1, dtype=int)]
    classes = list("ABCDE")
    intervals = bootstrap_intervals(labels, probs, classes, n_boot=500, seed=0)
    never = intervals.per_class["C"].precision
    assert never == Interval(low=None, high=None, resamples=0)  # never predicted: no precision to resample
    single = intervals.per_class["E"].sensitivity.resamples
    assert 250 < single < 400  # E is drawn in 1 - (1 - 1/200)^200 = 63 % of resamples
    assert intervals.overall.macro.sensitivity.resamples == single
    assert intervals.overall.accuracy.resamples == 500
    assert intervals.fewest_resamples <= single
    assert MetricIntervals.from_json(json.loads(json.dumps(intervals.to_json(), allow_nan=False))) == intervals


def test_intervals_are_seeded() -> None:
    labels, probs = make_case(seed=2, n_classes=3, n=120)
    first = bootstrap_intervals(labels, probs, ["A", "B", "C"], n_boot=200, seed=5)
    assert bootstrap_intervals(labels, probs, ["A", "B", "C"], n_boot=200, seed=5) == first
    assert bootstrap_intervals(labels, probs, ["A", "B", "C"], n_boot=200, seed=6) != first
    assert first.n_boot == 200 and first.seed == 5 and first.level == 0.95


def test_resample_counts_draw_n_cells_each() -> None:
    chunks = list(resample_counts(50, 150, seed=0))
    counts = np.concatenate(chunks)
    assert counts.shape == (150, 50) and (counts.sum(axis=1) == 50).all()
    assert abs(counts.mean() - 1.0) < 0.05


def test_percentile_interval_and_bad_level() -> None:
    iv = percentile_interval(np.arange(101.0), np.ones(101, dtype=bool), level=0.9)
    assert (iv["low"], iv["high"], iv["resamples"]) == (pytest.approx(5.0), pytest.approx(95.0), 101)
    assert percentile_interval(np.arange(3.0), np.zeros(3, dtype=bool))["low"] is None
    with pytest.raises(NeunnError, match="level"):
        bootstrap_intervals([0, 1], np.eye(2), ["A", "B"], level=95)
