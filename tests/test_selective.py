"""Tests for neunn.evaluation.selective: risk–coverage curve, AURC, coverage and accuracy at the threshold, ECE before/after."""

from __future__ import annotations

import numpy as np
import pytest

from neunn.errors import NeunnError
from neunn.evaluation.metrics import expected_calibration_error
from neunn.evaluation.selective import (
    calibration_summary,
    confidence_and_correct,
    risk_coverage_curve,
    selective_at_threshold,
    selective_report,
    uncalibrated_probabilities,
)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_risk_coverage_by_hand():
    curve = risk_coverage_curve([0.6, 0.9, 0.7, 0.8], [True, True, True, False])
    assert curve["threshold"] == [0.9, 0.8, 0.7, 0.6]
    assert curve["coverage"] == [0.25, 0.5, 0.75, 1.0]
    assert curve["risk"] == pytest.approx([0.0, 0.5, 1 / 3, 0.25])
    assert curve["aurc"] == pytest.approx((0 + 0.5 + 1 / 3 + 0.25) / 4)


def test_tied_confidences_are_kept_or_reviewed_together():
    curve = risk_coverage_curve([0.9, 0.5, 0.9], [True, True, False])
    assert curve["threshold"] == [0.9, 0.5] and curve["coverage"] == pytest.approx([2 / 3, 1.0])
    assert curve["risk"] == pytest.approx([0.5, 1 / 3])
    assert curve["aurc"] == pytest.approx(0.5 * 2 / 3 + 1 / 3 * 1 / 3)
    assert risk_coverage_curve([], []) == {"threshold": [], "coverage": [], "risk": [], "aurc": None}


def test_aurc_is_the_mean_risk_of_the_k_most_confident():
    rng = np.random.default_rng(0)
    confidence, correct = rng.random(500), rng.random(500) < 0.8
    order = np.argsort(-confidence)
    brute = np.mean([np.mean(~correct[order[:k]]) for k in range(1, 501)])
    curve = risk_coverage_curve(confidence, correct)
    assert curve["aurc"] == pytest.approx(brute, rel=1e-12)
    assert curve["risk"][-1] == pytest.approx(np.mean(~correct)) and len(curve["coverage"]) == 500


def test_coverage_and_accuracy_at_the_threshold():
    confidence, correct = [0.9, 0.8, 0.7, 0.6], [True, False, True, True]
    at = selective_at_threshold(confidence, correct, 0.65)
    assert at == {"threshold": 0.65, "n": 4, "n_accepted": 3, "n_review": 1, "coverage": 0.75,
                  "accuracy": pytest.approx(2 / 3), "accuracy_all": 0.75}
    assert selective_at_threshold(confidence, correct, 0.7)["n_accepted"] == 3  # equal to the threshold: kept
    assert selective_at_threshold(confidence, correct, 0.0)["coverage"] == 1.0
    nothing = selective_at_threshold(confidence, correct, 0.95)
    assert nothing["coverage"] == 0.0 and nothing["accuracy"] is None


def test_uncalibrated_probabilities_are_recovered_exactly():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, size=(50, 7))
    for temperature in (0.5, 1.0, 2.7):
        calibrated = _softmax(logits / temperature)
        assert np.abs(uncalibrated_probabilities(calibrated, temperature) - _softmax(logits)).max() < 1e-9
    with pytest.raises(NeunnError):
        uncalibrated_probabilities(_softmax(logits), 0.0)


def test_ece_before_and_after_calibration():
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(0, 5, size=(400, 7)), rng.integers(0, 7, 400)
    summary = calibration_summary(_softmax(logits / 3.0), labels, 3.0)
    assert summary["ece_before"] == pytest.approx(expected_calibration_error(_softmax(logits), labels), abs=1e-9)
    assert summary["ece_after"] == pytest.approx(expected_calibration_error(_softmax(logits / 3.0), labels))
    assert summary["ece_after"] < summary["ece_before"]  # random labels: softer is better calibrated
    same = calibration_summary(_softmax(logits), labels, 1.0)
    assert same["ece_before"] == pytest.approx(same["ece_after"])


def test_selective_report_bundles_the_parts():
    rng = np.random.default_rng(3)
    probs, labels = _softmax(rng.normal(0, 3, size=(1000, 7))), rng.integers(0, 7, 1000)
    report = selective_report(probs, labels, threshold=0.6, temperature=1.5, max_points=50)
    confidence, correct = confidence_and_correct(probs, labels)
    assert report["at_threshold"] == selective_at_threshold(confidence, correct, 0.6)
    full = risk_coverage_curve(confidence, correct)
    curve = report["risk_coverage"]
    assert len(curve["coverage"]) == 50 and curve["aurc"] == full["aurc"]
    assert curve["coverage"][0] == full["coverage"][0] and curve["coverage"][-1] == 1.0
    assert report["calibration"] == calibration_summary(probs, labels, 1.5)
    with pytest.raises(NeunnError):
        selective_report(probs, labels[:-1], threshold=0.6, temperature=1.0)
