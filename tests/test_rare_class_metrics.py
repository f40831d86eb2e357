"""Rare-class figures: average precision and the precision-recall curve against scikit-learn, the operating point
reaches its target on validation data, and every figure carries an interval around it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from neunn.errors import NeunnError
from neunn.evaluation.intervals import Ranking
from neunn.evaluation.rare_class import (
    average_precision,
    choose_threshold,
    default_positive_class,
    format_rare_class,
    operating_point,
    precision_recall_curve,
    rare_class_report,
    resolve_positive,
    weighted_average_precision,
)


def rare_case(seed: int, n: int = 400, prevalence: float = 0.05, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels of a rare class (1) among normal cells (0) and two-class probabilities that separate them imperfectly."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < prevalence).astype(np.int64)
    score = 1 / (1 + np.exp(-(rng.normal(size=n) + 2.5 * labels - 2.0)))
    if ties:
        score = np.round(score, 1)
    return labels, np.stack([1 - score, score], axis=1)


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_average_precision_and_curve_match_sklearn(seed: int, ties: bool) -> None:
    labels, probs = rare_case(seed, ties=ties)
    scores, positive = probs[:, 1], labels == 1
    assert average_precision(scores, positive) == pytest.approx(skm.average_precision_score(positive, scores))
    precision, recall, thresholds = precision_recall_curve(scores, positive)
    sk_precision, sk_recall, sk_thresholds = skm.precision_recall_curve(positive, scores)
    # scikit-learn lists thresholds ascending and appends the (recall 0, precision 1) end point.
    np.testing.assert_allclose(precision, sk_precision[:-1][::-1])
    np.testing.assert_allclose(recall, sk_recall[:-1][::-1])
    np.testing.assert_allclose(thresholds, sk_thresholds[::-1])
    assert average_precision(scores, np.zeros_like(positive)) is None


def test_weighted_average_precision_scores_the_cells_drawn() -> None:
    labels, probs = rare_case(3, n=150, ties=True)
    counts = np.random.default_rng(0).integers(0, 3, size=150)
    expanded = np.repeat(np.arange(150), counts)
    value, defined = weighted_average_precision(Ranking.of(probs[:, 1]), labels == 1, counts[None, :].astype(float))
    assert defined[0]
    assert value[0] == pytest.approx(skm.average_precision_score(labels[expanded] == 1, probs[expanded, 1]))


@pytest.mark.parametrize("target", [0.5, 0.7, 0.9, 1.0])
def test_threshold_reaches_the_target_on_validation_and_is_the_highest_that_does(target: float) -> None:
    labels, probs = rare_case(4, n=300, prevalence=0.1, ties=True)
    scores, positive = probs[:, 1], labels == 1
    choice = choose_threshold(scores, positive, target)
    threshold = choice["threshold"]
    reached = (scores[positive] >= threshold).mean()
    assert reached >= target and choice["validation"]["sensitivity"] == pytest.approx(reached)
    higher = scores[positive][scores[positive] > threshold]
    if higher.size:
        assert (scores[positive] >= higher.min()).mean() < target  # the next higher threshold misses the target
    assert choice["validation"]["n_positive"] == positive.sum()
    assert choice["validation"]["specificity"] == pytest.approx((scores[~positive] < threshold).mean())


def test_threshold_by_hand_and_without_positives() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    positive = np.array([True, False, True, True, False, True, False])
    # 4 positives; 75 % needs 3 of them: the third highest positive score, 0.6.
    assert choose_threshold(scores, positive, 0.75)["threshold"] == 0.6
    assert choose_threshold(scores, positive, 0.7)["threshold"] == 0.6  # 2.8 positives round up to 3
    assert choose_threshold(scores, positive, 1.0)["threshold"] == 0.4
    empty = choose_threshold(scores, np.zeros(7, dtype=bool), 0.9)
    assert empty["threshold"] is None and empty["validation"]["n_positive"] == 0


def test_operating_point_counts_intervals_and_per_cell_thresholds() -> None:
    labels, probs = rare_case(5, n=500, prevalence=0.08)
    scores, positive = probs[:, 1], labels == 1
    point = operating_point(scores, positive, 0.3, n_boot=300)
    called = scores >= 0.3
    c = point["counts"]
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == ((called & positive).sum(), (~called & positive).sum(),
                                                    (called & ~positive).sum(), (~called & ~positive).sum())
    for key, value in (("sensitivity", c["tp"] / (c["tp"] + c["fn"])), ("specificity", c["tn"] / (c["tn"] + c["fp"])),
                       ("precision", c["tp"] / (c["tp"] + c["fp"]))):
        figure = point[key]
        assert figure["value"] == pytest.approx(value) and figure["low"] <= value <= figure["high"]
    assert operating_point(scores, positive, np.full(500, 0.3), n_boot=300) == point
    never = operating_point(scores, positive, 2.0, n_boot=50)
    assert never["precision"] == {"value": None, "low": None, "high": None, "resamples": 0}


def test_report_with_validation_choice_is_json_ready_and_prints() -> None:
    val_labels, val_probs = rare_case(6, n=300, prevalence=0.1)
    labels, probs = rare_case(7, n=400, prevalence=0.1)
    choice = choose_threshold(val_probs[:, 1], val_labels == 1, 0.9)
    report = rare_class_report(labels, probs, ["normal", "vacuolated"], "vacuolated", choice=choice, n_boot=300)
    for key in ("roc_auc", "average_precision"):
        figure = report[key]
        assert figure["low"] <= figure["value"] <= figure["high"] and figure["resamples"] == 300
    assert report["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(labels, probs[:, 1]))
    test = report["operating_point"]["test"]
    assert test["sensitivity"]["value"] == pytest.approx((probs[labels == 1, 1] >= choice["threshold"]).mean())
    assert report["n_positive"] == labels.sum() and report["prevalence"] == pytest.approx(labels.mean())
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    text = format_rare_class(report)
    assert "rare class 'vacuolated'" in text and f"{100 * report['average_precision']['value']:.1f}" in text
    assert f"threshold {choice['threshold']:.3f}" in text and f"({test['counts']['tp']} of" in text


def test_default_positive_class_and_option_checks() -> None:
    assert default_positive_class(["normal", "vacuolated"], [0, 0, 0, 1]) == "vacuolated"
    assert default_positive_class(["rare", "common"], [0, 1, 1]) == "rare"
    assert default_positive_class(["a", "b"], [0, 1]) is None  # a tie: no class is the rare one
    assert default_positive_class(["a", "b", "c"], [0, 0, 1]) is None
    assert resolve_positive(["a", "b", "c"], [0, 1, 2], None, None) is None
    assert resolve_positive(["a", "b", "c"], [0, 1, 2], "c", 0.9) == "c"
    with pytest.raises(NeunnError, match="not one of"):
        resolve_positive(["a", "b"], [0, 1], "z", None)
    with pytest.raises(NeunnError, match="needs a positive class"):
        resolve_positive(["a", "b", "c"], [0, 1, 2], None, 0.9)
    with pytest.raises(NeunnError, match="fraction"):
        resolve_positive(["a", "b"], [0, 0, 1], None, 90)
