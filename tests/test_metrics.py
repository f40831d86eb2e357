"""Checks neunn.evaluation.metrics against scikit-learn on random data and against hand-computed values on tiny examples."""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
from sklearn import metrics as skm

from neunn.errors import NeunnError
from neunn.evaluation.intervals import bootstrap_intervals
from neunn.evaluation.metric_results import (
    Averages,
    ClassMetrics,
    Interval,
    MetricResults,
    OneVsRest,
    OverallIntervals,
    OverallMetrics,
)
from neunn.evaluation.metrics import (
    METRICS,
    PAPER_METRICS,
    PER_CLASS_KEYS,
    compute_metrics,
    confusion_matrix,
    expected_calibration_error,
    format_metrics_table,
    metrics_from_predictions_csv,
    roc_auc_one_vs_rest,
    roc_curve_points,
)

from conftest import CASES, make_case




@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_compute_metrics_matches_sklearn(case: dict) -> None:
    labels, probs = make_case(**case)
    k = case["n_classes"]
    classes = [f"C{i}" for i in range(k)]
    pred = probs.argmax(axis=1)
    if "never_predicted" in case:
        assert case["never_predicted"] not in pred
    if "absent" in case:
        assert case["absent"] not in labels
    m = compute_metrics(labels, probs, classes)
    overall, every = m.overall, list(range(k))

    assert m.n == labels.size and list(m.classes) == classes
    assert [list(row) for row in m.confusion_matrix] == skm.confusion_matrix(labels, pred, labels=every).tolist()
    assert overall.accuracy == pytest.approx(skm.accuracy_score(labels, pred))
    assert overall.mcc == pytest.approx(skm.matthews_corrcoef(labels, pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when y_pred holds a class missing from y_true
        assert overall.balanced_accuracy == pytest.approx(skm.balanced_accuracy_score(labels, pred))

    for average, got in (("macro", overall.macro), ("weighted", overall.weighted)):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            labels, pred, labels=every, average=average, zero_division=0)
        jaccard = skm.jaccard_score(labels, pred, labels=every, average=average, zero_division=0)
        assert (got.precision, got.sensitivity, got.f1, got.jaccard) == pytest.approx(
            (precision, recall, f1, jaccard))

    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, pred, labels=every, average=None, zero_division=0)
    jaccard = skm.jaccard_score(labels, pred, labels=every, average=None, zero_division=0)
    defined_auc = []
    for i, name in enumerate(classes):
        row = m.per_class[name]
        assert row.support == support[i]
        assert (row.precision, row.sensitivity, row.f1, row.jaccard) == pytest.approx(
            (precision[i], recall[i], f1[i], jaccard[i]))
        if i in labels:
            expected_auc = skm.roc_auc_score(labels == i, probs[:, i])
            assert row.roc_auc == pytest.approx(expected_auc)
            defined_auc.append(expected_auc)
        else:
            assert row.roc_auc is None
    assert overall.macro.roc_auc == pytest.approx(np.mean(defined_auc))
    if "absent" not in case:
        for average, got in (("macro", overall.macro), ("weighted", overall.weighted)):
            assert got.roc_auc == pytest.approx(
                skm.roc_auc_score(labels, probs, multi_class="ovr", average=average))


def test_json_round_trip_has_no_nan() -> None:
    labels, probs = make_case(seed=5, n_classes=6, never_predicted=1, absent=3)
    m = compute_metrics(labels, probs, [f"C{i}" for i in range(6)])
    text = json.dumps(m.to_json(), allow_nan=False)
    assert json.loads(text) == m.to_json()
    assert m.per_class["C3"].roc_auc is None
    assert m.per_class["C1"].precision == 0.0  # never predicted: zero_division=0
    assert m.per_class["C3"].sensitivity == 0.0  # absent from y_true: zero_division=0


def test_hand_made_example_specificity_and_friends() -> None:
    # true 0,0,0,1,1,2 ; predicted 0,0,1,1,2,2
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    probs = np.full((6, 3), 0.1)
    probs[np.arange(6), pred] = 0.8
    m = compute_metrics(labels, probs, ["A", "B", "C"])
    assert [list(row) for row in m.confusion_matrix] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # Specificity TN / (TN + FP): A 3/3, B 3/4, C 4/5.
    spec = [m.per_class[c].specificity for c in "ABC"]
    assert spec == pytest.approx([1.0, 0.75, 0.8])
    assert m.overall.macro.specificity == pytest.approx((1.0 + 0.75 + 0.8) / 3)
    assert m.overall.weighted.specificity == pytest.approx((3 * 1.0 + 2 * 0.75 + 1 * 0.8) / 6)
    assert [m.per_class[c].sensitivity for c in "ABC"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert [m.per_class[c].precision for c in "ABC"] == pytest.approx([1.0, 1 / 2, 1 / 2])
    assert [m.per_class[c].jaccard for c in "ABC"] == pytest.approx([2 / 3, 1 / 3, 1 / 2])
    assert m.overall.accuracy == pytest.approx(4 / 6)


def test_confusion_matrix_orientation_and_range_check() -> None:
    assert confusion_matrix([0, 0, 1], [1, 1, 1], 3).tolist() == [[0, 2, 0], [0, 1, 0], [0, 0, 0]]
    with pytest.raises(NeunnError):
        confusion_matrix([0, 3], [0, 1], 3)


def test_expected_calibration_error_hand_made() -> None:
    # Bin (0.9, 1]: confidence 0.95, accuracy 1/2 -> gap 0.45. Bin (0.6, 0.7]: confidence 0.65, accuracy 1 -> 0.35.
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.35, 0.65]])
    assert expected_calibration_error(probs, [0, 1, 0, 1], n_bins=10) == pytest.approx(0.5 * 0.45 + 0.5 * 0.35)
    # Confidence 0.75 with 3 of 4 right is perfectly calibrated.
    calibrated = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(calibrated, [0, 0, 0, 1], n_bins=15) == pytest.approx(0.0)


def test_auc_and_roc_curve_with_ties_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, size=200).astype(float)  # heavy ties
    positive = rng.random(200) < 0.3 + 0.1 * scores
    assert roc_auc_one_vs_rest(scores, positive) == pytest.approx(skm.roc_auc_score(positive, scores))
    fpr, tpr = roc_curve_points(scores, positive)
    sk_fpr, sk_tpr, _ = skm.roc_curve(positive, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert roc_auc_one_vs_rest(scores, np.zeros(200, dtype=bool)) is None


def test_degenerate_single_predicted_class_gives_zero_mcc() -> None:
    labels = np.array([0, 1, 2, 0, 1])
    probs = np.tile([0.6, 0.3, 0.1], (5, 1))
    m = compute_metrics(labels, probs, ["A", "B", "C"])
    assert m.overall.mcc == skm.matthews_corrcoef(labels, probs.argmax(axis=1)) == 0.0
    assert m.overall.macro.roc_auc == pytest.approx(0.5)  # constant scores tie everywhere


@pytest.mark.parametrize("labels, probs, fragment", [
    ([0, 1], np.full((2, 2), 0.5), "shape"),
    ([0, 1, 1], np.full((2, 3), 1 / 3), "one label per"),
    ([0, 3], np.full((2, 3), 1 / 3), "between 0 and 2"),
    ([0, 1], np.array([[2.0, 1.0, 0.5], [0.1, 0.2, 0.3]]), "sum to 1"),
    ([0, 1], np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]]), "finite"),
])
def test_invalid_inputs_raise_one_sentence_errors(labels, probs, fragment) -> None:
    with pytest.raises(NeunnError, match=fragment) as info:
        compute_metrics(labels, probs, ["A", "B", "C"])
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message


def test_format_metrics_table_lists_rows_and_paper() -> None:
    labels, probs = make_case(seed=8, n_classes=7)
    m = compute_metrics(labels, probs, ["NEU", "HYP", "CRY", "DB", "HJBLI", "GBI", "BAC"])
    table = format_metrics_table(m)
    for row in ("accuracy", "sensitivity", "specificity", "precision", "F1", "Jaccard", "MCC",
                "balanced accuracy", "ECE"):
        assert row in table
    assert f"{100 * PAPER_METRICS['jaccard']:.1f}" in table and "paper" in table
    assert f"{100 * m.overall.macro.f1:.1f}" in table
    assert "paper" not in format_metrics_table(m, with_paper=False)


def test_metrics_from_predictions_csv_reproduces_compute_metrics(tmp_path) -> None:
    classes = ["NEU", "HYP", "CRY", "DB"]
    labels, probs = make_case(seed=9, n_classes=4, n=120, never_predicted=2)
    csv_path = tmp_path / "predictions.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "pred"] + [f"prob_{c}" for c in classes])
        for i, (label, row) in enumerate(zip(labels, probs)):
            writer.writerow([f"{classes[label]}/img_{i}.jpg", classes[label], classes[row.argmax()]] + list(row))
    assert metrics_from_predictions_csv(csv_path) == compute_metrics(labels, probs, classes)

    bad = tmp_path / "bad.csv"
    bad.write_text("path,true,pred,prob_A,prob_B\nx.jpg,Z,A,0.5,0.5\n", encoding="utf-8")
    with pytest.raises(NeunnError, match="true class 'Z'"):
        metrics_from_predictions_csv(bad)
    with pytest.raises(NeunnError, match="does not exist"):
        metrics_from_predictions_csv(tmp_path / "missing.csv")


# A metrics.json as NeuNN wrote it before the typed results (v0.1: no intervals), with the sections of other modules.
OLD_METRICS_JSON = {
    "classes": ["NEU", "GBI"], "n": 4,
    "overall": {"accuracy": 0.75, "balanced_accuracy": 0.75, "mcc": 0.5773502691896258,
                "macro": {"sensitivity": 0.75, "specificity": 0.75, "precision": 0.8333333333333333,
                          "f1": 0.7333333333333334, "jaccard": 0.5833333333333333, "roc_auc": 1.0},
                "weighted": {"sensitivity": 0.75, "specificity": 0.75, "precision": 0.8333333333333333,
                             "f1": 0.7333333333333334, "jaccard": 0.5833333333333333, "roc_auc": 1.0},
                "ece": 0.125},
    "per_class": {"NEU": {"sensitivity": 1.0, "specificity": 0.5, "precision": 0.6666666666666666, "f1": 0.8,
                          "jaccard": 0.6666666666666666, "roc_auc": 1.0, "support": 2},
                  "GBI": {"sensitivity": 0.5, "specificity": 1.0, "precision": 1.0, "f1": 0.6666666666666666,
                          "jaccard": 0.5, "roc_auc": None, "support": 2}},
    "confusion_matrix": [[2, 0], [1, 1]],
    "split": "test", "checkpoint": "best", "tta": False, "skipped": [], "synthetic_data": True,
}


def test_result_fields_are_the_metric_registry() -> None:
    assert OneVsRest.keys() == PER_CLASS_KEYS
    assert OverallIntervals.SINGLE == tuple(m.key for m in METRICS if not m.per_class)
    single = {m.key for m in METRICS if not m.per_class}
    assert single | {"macro", "weighted"} == set(OverallMetrics.__dataclass_fields__)
    assert list(ClassMetrics.__dataclass_fields__) == [*PER_CLASS_KEYS, "support"]


def test_metric_results_round_trip_through_json_exactly() -> None:
    labels, probs = make_case(seed=5, n_classes=6, never_predicted=1, absent=3)
    classes = [f"C{i}" for i in range(6)]
    plain = compute_metrics(labels, probs, classes)
    with_intervals = replace(plain, intervals=bootstrap_intervals(labels, probs, classes, n_boot=50))
    for results in (plain, with_intervals):
        text = json.dumps(results.to_json(), indent=1, allow_nan=False)
        loaded = json.loads(text)
        assert MetricResults.from_json(loaded) == results
        assert json.dumps(MetricResults.from_json(loaded).to_json(), indent=1) == text  # same keys, same order
    data = with_intervals.to_json()
    assert list(data) == ["classes", "n", "overall", "per_class", "confusion_matrix", "intervals"]
    assert list(data["overall"]) == ["accuracy", "balanced_accuracy", "mcc", "macro", "weighted", "ece"]
    assert list(data["per_class"]["C0"]) == [*PER_CLASS_KEYS, "support"]
    assert list(data["intervals"]) == ["level", "n_boot", "seed", "method", "fewest_resamples", "overall",
                                       "per_class"]
    assert list(data["intervals"]["overall"]) == ["accuracy", "mcc", "balanced_accuracy", "ece", "macro", "weighted"]
    assert data["intervals"]["per_class"]["C1"]["precision"] == {"low": None, "high": None, "resamples": 0}
    assert "intervals" not in plain.to_json()


def test_an_old_metrics_json_loads() -> None:
    results = MetricResults.from_json(json.loads(json.dumps(OLD_METRICS_JSON)))
    assert results.classes == ("NEU", "GBI") and results.n == 4 and results.intervals is None
    assert results.overall.accuracy == 0.75 and results.overall.macro.f1 == 0.7333333333333334
    assert results.overall.weighted == Averages(0.75, 0.75, 0.8333333333333333, 0.7333333333333334,
                                                0.5833333333333333, 1.0)
    assert results.per_class["GBI"] == ClassMetrics(0.5, 1.0, 1.0, 0.6666666666666666, 0.5, None, support=2)
    assert results.confusion_matrix == ((2, 0), (1, 1))
    metric_keys = ("classes", "n", "overall", "per_class", "confusion_matrix")
    assert results.to_json() == {key: OLD_METRICS_JSON[key] for key in metric_keys}
    assert format_metrics_table(results).splitlines()[-1] == "n = 4 images, 2 classes"
    assert results.overall.macro.value("roc_auc") == 1.0 and results.overall.value("mcc") == results.overall.mcc
    with pytest.raises(KeyError, match="no metric 'support'"):
        results.overall.macro.value("support")
    assert Interval.from_json({"value": 0.9, "low": 0.8, "high": 0.95, "resamples": 10}) == Interval(0.8, 0.95, 10)
