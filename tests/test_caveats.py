"""Warnings fire when a table would mislead (a class never predicted, accuracy no better than the commonest class, an
operating point that could not be chosen) and stay silent otherwise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from neunn.evaluation.caveats import metric_warnings
from neunn.evaluation.intervals import bootstrap_intervals
from neunn.evaluation.metric_results import MetricResults
from neunn.evaluation.metrics import compute_metrics, format_metrics_table


def evaluated(labels: list[int], pred: list[int], classes: list[str], n_boot: int = 300) -> dict:
    """Metrics (with intervals and warnings) of confident predictions ``pred`` of ``labels``."""
    probs = np.full((len(labels), len(classes)), 0.1 / (len(classes) - 1))
    probs[np.arange(len(labels)), pred] = 0.9
    intervals = bootstrap_intervals(np.array(labels), probs, classes, n_boot=n_boot)
    metrics = replace(compute_metrics(np.array(labels), probs, classes), intervals=intervals).to_json()
    metrics["warnings"] = metric_warnings(metrics)
    return metrics


def test_a_never_predicted_rare_class_is_named_and_accuracy_is_compared() -> None:
    # 7 vacuolated cells among 100, all called normal: accuracy 93 % equals always answering 'normal'.
    metrics = evaluated([0] * 93 + [1] * 7, [0] * 100, ["normal", "vacuolated"])
    never, baseline = metrics["warnings"]
    assert never == ("The model never predicts 'vacuolated' (0 of 7 such cells found): accuracy and specificity say "
                     "nothing about this class.")
    low, high = (100 * metrics["intervals"]["overall"]["accuracy"][k] for k in ("low", "high"))
    assert baseline == (f"Accuracy 93.0 % [{low:.1f}, {high:.1f}] does not beat the 93.0 % of always answering "
                        "'normal', the commonest class.")
    table = format_metrics_table(MetricResults.from_json(metrics), warnings=metrics["warnings"])
    assert table.splitlines()[0] == f"warning: {never}" and table.index(baseline) < table.index("metric (%)")


def test_accuracy_whose_interval_includes_the_baseline_is_flagged() -> None:
    # 60 of 100 are 'a'; 64 right: above 60 %, but not clearly on 100 cells.
    labels = [0] * 60 + [1] * 40
    pred = [0] * 50 + [1] * 10 + [1] * 14 + [0] * 26
    (warning,) = evaluated(labels, pred, ["a", "b"])["warnings"]
    assert warning.startswith("Accuracy 64.0 % [") and "is not clearly above the 60.0 %" in warning
    assert warning.endswith("its 95 % interval includes it.")


def test_a_good_balanced_model_gets_no_warning() -> None:
    labels = [k for k in range(3) for _ in range(40)]
    pred = [k if i % 10 else (k + 1) % 3 for i, k in enumerate(labels)]  # 90 % right, every class predicted
    metrics = evaluated(labels, pred, ["a", "b", "c"])
    assert metrics["warnings"] == []
    assert not format_metrics_table(MetricResults.from_json(metrics), warnings=metrics["warnings"]).startswith(
        "warning")


def test_operating_point_warnings() -> None:
    metrics = evaluated([0] * 80 + [1] * 20, [0] * 75 + [1] * 5 + [1] * 18 + [0] * 2, ["normal", "rare"])
    metrics["rare_class"] = {"positive": "rare", "operating_point": {"test": None,
                                                                     "chosen_on": "the validation split"}}
    assert metric_warnings(metrics)[-1].startswith("No threshold could be chosen for 'rare' because the validation "
                                                   "split had no such cell")
    metrics["rare_class"]["operating_point"] = {"test": {}, "same_cells": True, "chosen_on": "the validation split"}
    assert "chosen on the same cells it is measured on" in metric_warnings(metrics)[-1]
    folds = [{"fold": 1, "threshold": 0.2}, {"fold": 2, "threshold": None}]
    metrics["rare_class"]["operating_point"] = {"test": None, "chosen_on": "the validation split of each fold",
                                                "folds": folds}
    assert metric_warnings(metrics)[-1].startswith("The validation split of fold 2 had no 'rare' cell")
    metrics["rare_class"]["operating_point"] = {"test": {}, "chosen_on": "the validation split"}
    assert not any("threshold" in w for w in metric_warnings(metrics))
