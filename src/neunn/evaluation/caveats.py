"""Warnings that keep a metric table from misleading, one sentence each: printed above the table, shown at the top of
the HTML report and stored in metrics.json as ``metrics["warnings"]``.

    metrics["warnings"] = metric_warnings(metrics)   # metrics.json's dict: compute_metrics(...).to_json(), with
                                                     # "intervals" and "rare_class" when they are there

They fire when a class is never predicted (its cells are all missed, yet accuracy and specificity can look fine), when
accuracy does not beat, or cannot be told from, always answering the commonest class, and when a rare-class
operating point could not be chosen or was chosen on the cells it is measured on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neunn.evaluation.metric_results import MetricResults


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def never_predicted(results: MetricResults) -> list[str]:
    """One warning per class that has cells but is never predicted."""
    matrix = np.asarray(results.confusion_matrix)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    return [f"The model never predicts '{name}' (0 of {support[k]} such cells found): accuracy and specificity say "
            "nothing about this class." for k, name in enumerate(results.classes)
            if support[k] > 0 and predicted[k] == 0]


def majority_baseline(results: MetricResults) -> list[str]:
    """A warning when accuracy does not beat always answering the commonest class, or its interval includes that."""
    support = np.asarray(results.confusion_matrix).sum(axis=1)
    commonest = int(support.argmax())
    baseline, accuracy = support[commonest] / support.sum(), results.overall.accuracy
    interval = None if results.intervals is None else results.intervals.overall.accuracy
    low, high = (None, None) if interval is None else (interval.low, interval.high)
    shown = f"{_percent(accuracy)} %" + ("" if low is None else f" [{_percent(low)}, {_percent(high)}]")
    tied = (support == support[commonest]).sum() > 1
    always = (f"the {_percent(baseline)} % of always answering '{results.classes[commonest]}', "
              + ("one of the commonest classes" if tied else "the commonest class"))
    if accuracy <= baseline:
        return [f"Accuracy {shown} does not beat {always}."]
    if low is not None and low <= baseline:
        level = f"{100 * results.intervals.level:.0f} %"
        return [f"Accuracy {shown} is not clearly above {always}: its {level} interval includes it."]
    return []


def operating_point_caveats(metrics: dict[str, Any]) -> list[str]:
    """Warnings about the rare-class operating point: not chosen, or chosen on the very cells it is measured on."""
    point = (metrics.get("rare_class") or {}).get("operating_point")
    if point is None:
        return []
    name = metrics["rare_class"]["positive"]
    missing = [str(f["fold"]) for f in point.get("folds", []) if f["threshold"] is None]
    if missing:
        return [f"The validation split of fold {', '.join(missing)} had no '{name}' cell, so no threshold could be "
                "chosen there and there is no pooled operating point."]
    if point["test"] is None:
        return [f"No threshold could be chosen for '{name}' because {point['chosen_on']} had no such cell, so there "
                "is no operating point."]
    if point.get("same_cells"):
        return [f"The threshold for '{name}' was chosen on the same cells it is measured on, so its sensitivity and "
                "specificity are optimistic."]
    return []


def metric_warnings(metrics: dict[str, Any]) -> list[str]:
    """Every warning that applies to a metrics.json's metrics (and its rare_class section, when it has one), as
    one-sentence strings (an empty list when none does)."""
    results = MetricResults.from_json(metrics)
    return [*never_predicted(results), *majority_baseline(results), *operating_point_caveats(metrics)]
