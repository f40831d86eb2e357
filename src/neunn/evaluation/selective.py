"""Selective classification: what the "Unidentified — review" bin buys, and what calibration did to confidence.

    report = selective_report(probs, y_true, threshold=0.6, temperature=predictor.temperature)
    report["at_threshold"]    # coverage (share of cells the model keeps) and accuracy on them, at the review threshold
    report["risk_coverage"]   # the risk–coverage curve: error rate of the kept cells as the threshold falls; and AURC
    report["calibration"]     # ECE before and after temperature scaling, on the same cells

``probs`` are the Predictor's calibrated probabilities, softmax(z / T). The uncalibrated ones are recovered exactly,
softmax(T · log p) = softmax(z) (softmax ignores a constant added to every logit), so evaluation needs one pass only.
A cell is kept when its calibrated confidence is at least the threshold, the Predictor's rule (under it: review).
All functions are pure and return JSON-ready values (floats, lists, None where undefined).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neunn.errors import NeunnError
from neunn.evaluation.metrics import expected_calibration_error


def _checked(probs: np.ndarray, y_true: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(y_true, dtype=np.int64).ravel()
    if probs.ndim != 2 or probs.shape[0] != labels.size:
        raise NeunnError("probs must be an (n_samples, n_classes) array with one row per label.")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise NeunnError(f"y_true contains a label outside 0..{probs.shape[1] - 1}.")
    return probs, labels


def confidence_and_correct(probs: np.ndarray, y_true: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Top-class probability and whether the top class is right, per sample."""
    probs, labels = _checked(probs, y_true)
    return probs.max(axis=1), probs.argmax(axis=1) == labels


def risk_coverage_curve(confidence: Sequence[float], correct: Sequence[bool]) -> dict[str, Any]:
    """Coverage and risk (error rate of kept samples) for every distinct confidence threshold, and the AURC.

    Points are ordered from the strictest threshold (highest confidence, least coverage) to full coverage; samples
    of equal confidence are kept or reviewed together. AURC is the area under this step curve, which for distinct
    confidences is the mean over k of the risk of the k most confident samples (Geifman et al. 2019).
    """
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    errors = ~np.asarray(correct, dtype=bool).ravel()
    if confidence.shape != errors.shape:
        raise NeunnError("confidence and correct must have one value per sample.")
    if confidence.size == 0:
        return {"threshold": [], "coverage": [], "risk": [], "aurc": None}
    order = np.argsort(-confidence, kind="stable")
    sorted_conf, cumulative_errors = confidence[order], np.cumsum(errors[order])
    # The last sample of each run of equal confidences closes a point of the curve.
    ends = np.flatnonzero(np.r_[sorted_conf[1:] != sorted_conf[:-1], True])
    kept = ends + 1
    coverage = kept / confidence.size
    risk = cumulative_errors[ends] / kept
    aurc = float(np.sum(risk * np.diff(np.r_[0.0, coverage])))
    return {"threshold": sorted_conf[ends].tolist(), "coverage": coverage.tolist(), "risk": risk.tolist(),
            "aurc": aurc}


def selective_at_threshold(confidence: Sequence[float], correct: Sequence[bool], threshold: float) -> dict[str, Any]:
    """Coverage, and accuracy on the kept samples, when samples under ``threshold`` go to review."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    kept = confidence >= threshold
    n_kept = int(kept.sum())
    return {"threshold": float(threshold), "n": int(confidence.size), "n_accepted": n_kept,
            "n_review": int(confidence.size - n_kept),
            "coverage": n_kept / confidence.size if confidence.size else None,
            "accuracy": float(correct[kept].mean()) if n_kept else None,
            "accuracy_all": float(correct.mean()) if confidence.size else None}


def uncalibrated_probabilities(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Recover softmax(z) from temperature-scaled probabilities softmax(z / T)."""
    if not temperature > 0:
        raise NeunnError(f"temperature must be positive, got {temperature}.")
    with np.errstate(divide="ignore"):
        scaled = np.log(np.asarray(probs, dtype=np.float64)) * float(temperature)  # a zero stays -inf: weight 0
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def calibration_summary(probs: np.ndarray, y_true: Sequence[int], temperature: float,
                        n_bins: int = 15) -> dict[str, Any]:
    """ECE of the same predictions before and after temperature scaling (``probs`` are the calibrated ones)."""
    probs, labels = _checked(probs, y_true)
    if labels.size == 0:
        return {"temperature": float(temperature), "ece_before": None, "ece_after": None, "n_bins": n_bins}
    before = uncalibrated_probabilities(probs, temperature)
    return {"temperature": float(temperature), "n_bins": n_bins,
            "ece_before": expected_calibration_error(before, labels, n_bins=n_bins),
            "ece_after": expected_calibration_error(probs, labels, n_bins=n_bins)}


def _thinned(curve: dict[str, Any], max_points: int) -> dict[str, Any]:
    """At most ``max_points`` points of a curve (always its first and last), for reports; AURC is unchanged."""
    n = len(curve["coverage"])
    if n <= max_points:
        return curve
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return {**{k: [curve[k][i] for i in keep] for k in ("threshold", "coverage", "risk")}, "aurc": curve["aurc"]}


def selective_report(probs: np.ndarray, y_true: Sequence[int], *, threshold: float, temperature: float,
                     max_points: int = 200) -> dict[str, Any]:
    """Everything evaluate reports about the review bin and calibration, as one JSON-ready dict."""
    confidence, correct = confidence_and_correct(probs, y_true)
    return {"at_threshold": selective_at_threshold(confidence, correct, threshold),
            "risk_coverage": _thinned(risk_coverage_curve(confidence, correct), max_points),
            "calibration": calibration_summary(probs, y_true, temperature)}
