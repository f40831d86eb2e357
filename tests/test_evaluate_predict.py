"""Evaluation outputs recompute from predictions.csv; prediction streams rows and survives bad files."""

import copy
import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from broken_images import write_broken_corpus
from neunn.cli import main
from neunn.data.image_io import load_rgb
from neunn.data.preprocess import image_to_uint8, load_pixels
from neunn.errors import NeunnError
from neunn.evaluation.evaluate import evaluate_run
from neunn.evaluation.metrics import metrics_from_predictions_csv
from neunn.inference.predictor import Predictor


def test_every_metric_recomputes_from_predictions_csv(trained_run: Path):
    metrics = evaluate_run(trained_run, split="test")
    out = trained_run / "eval" / "test"
    saved = json.loads((out / "metrics.json").read_text())
    recomputed = metrics_from_predictions_csv(out / "predictions.csv").to_json()
    for key in ("classes", "n", "overall", "per_class", "confusion_matrix"):
        assert recomputed[key] == saved[key] == json.loads(json.dumps(metrics[key])), key
    split = json.loads((trained_run / "splits.json").read_text())
    assert saved["n"] == len(split["splits"]["test"]) and saved["synthetic_data"] is True
    html = (out / "report.html").read_text()
    assert "synthetic" in html.lower() and "94.3" in html


def test_evaluate_refuses_a_test_set_that_changed(trained_run: Path, phantom_dir: Path, tmp_path: Path):
    copy = tmp_path / "data"
    shutil.copytree(phantom_dir, copy)
    first_test = json.loads((trained_run / "splits.json").read_text())["splits"]["test"][0]["path"]
    (copy / first_test).unlink()
    with pytest.raises(NeunnError, match="dataset changed"):
        evaluate_run(trained_run, data_dir=copy, split="test")


def test_evaluate_all_scores_an_external_folder(trained_run: Path, phantom_dir: Path, tmp_path: Path):
    metrics = evaluate_run(trained_run, data_dir=phantom_dir, split="all")
    assert metrics["n"] == 84 and (trained_run / "eval" / "all" / "report.html").is_file()
    # The run's own dataset, scored whole, holds the cells it learnt from: the figures say so at the top.
    split = json.loads((trained_run / "splits.json").read_text())["splits"]
    seen = len(split["train"]) + len(split["val"])
    assert metrics["warnings"][0].startswith(f"{seen} of the 84 cells scored are images this run trained on")
    assert metrics["warnings"][0] in (trained_run / "eval" / "all" / "report.html").read_text()
    # A folder of only its test cells carries no such warning.
    for entry in split["test"]:
        (tmp_path / entry["label"]).mkdir(exist_ok=True)
        (tmp_path / entry["label"] / Path(entry["path"]).name).write_bytes((phantom_dir / entry["path"]).read_bytes())
    unseen = evaluate_run(trained_run, data_dir=tmp_path, split="all")
    assert unseen["n"] == len(split["test"]) and not any("trained on" in w for w in unseen["warnings"])


def test_predictor_results_are_consistent(trained_run: Path, phantom_dir: Path):
    predictor = Predictor.from_run(trained_run)
    files = sorted((phantom_dir / "GBI").glob("*.png"))[:5]
    results = list(predictor.predict_files(files, batch_size=2))
    assert [r.path for r in results] == [str(f) for f in files]
    for r in results:
        assert r.error is None and r.label in predictor.classes
        assert abs(sum(r.probs) - 1) < 1e-5 and r.probability == max(r.probs) == r.top[0][1]
        assert [c for c, _ in r.top] == sorted(predictor.classes, key=lambda c: -r.probs[predictor.classes.index(c)])[:3]
        assert r.critical == (r.label in {"GBI", "BAC"})
        assert r.needs_review == (r.probability < 0.6)
    # Bytes and paths go through the same preprocessing.
    from_bytes = predictor.predict_sources([("x", files[0].read_bytes())])[0]
    assert from_bytes.probs == pytest.approx(results[0].probs, abs=1e-6)


def test_prediction_prepares_jpegs_as_the_run_was_trained(trained_run: Path, phantom_dir: Path, tmp_path: Path):
    predictor = Predictor.from_run(trained_run)
    assert predictor.jpeg_draft is True  # recorded in the checkpoint by training
    big = Image.open(sorted((phantom_dir / "GBI").glob("*.png"))[0]).resize((4 * predictor.img_size,) * 2)
    jpg = tmp_path / "cell.jpg"
    big.save(jpg, quality=95)
    draft = load_pixels(jpg, predictor.img_size, jpeg_draft=True)
    full = image_to_uint8(load_rgb(jpg).image, predictor.img_size)
    assert torch.equal(predictor.load_pixels(jpg), draft) and not torch.equal(draft, full)
    got = next(predictor.predict_files([jpg])).probs
    assert got == pytest.approx(predictor.probabilities(draft[None])[0].tolist(), abs=1e-6)
    # A run trained before draft decoding existed has no such key, and keeps decoding in full.
    engine = copy.copy(predictor.engine)
    engine.meta = {k: v for k, v in predictor.meta.items() if k != "jpeg_draft"}
    legacy = Predictor(engine)
    assert legacy.jpeg_draft is False and torch.equal(legacy.load_pixels(jpg), full)


def test_predict_cli_keeps_going_past_bad_files(trained_run: Path, phantom_dir: Path, tmp_path: Path, capsys):
    inputs = tmp_path / "inputs"
    shutil.copytree(phantom_dir / "NEU", inputs / "sample")
    reasons = write_broken_corpus(inputs / "broken")
    out = tmp_path / "p.csv"
    assert main(["predict", str(trained_run), str(inputs), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 + len(reasons)
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert len(errors) == len(reasons)
    for name, reason in reasons.items():
        assert reason in errors[Path(name).name]
    assert all(r["pred"] for r in rows if not r["error"])

    assert main(["predict", str(trained_run), str(inputs / "sample"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 12 and {"label", "probability", "top", "critical", "needs_review"} <= set(data[0])


def test_predict_fails_only_when_nothing_could_be_read(trained_run: Path, tmp_path: Path, capsys):
    write_broken_corpus(tmp_path / "broken")
    assert main(["predict", str(trained_run), str(tmp_path / "broken"), "--out", str(tmp_path / "p.csv")]) == 2
    assert "No input file could be processed." in capsys.readouterr().err


def test_tta_and_robustness_table(trained_run: Path):
    plain = evaluate_run(trained_run, split="val")
    metrics = evaluate_run(trained_run, split="val", tta=True, perturb=["blur=1.0", "hue=0.05"])
    rows = metrics["robustness"]["rows"]
    assert [r["perturbation"] for r in rows] == ["none", "blur=1", "hue=0.05"]
    assert rows[0]["accuracy"] == metrics["overall"]["accuracy"]
    for r in rows:
        assert r["accuracy_drop"] == pytest.approx(rows[0]["accuracy"] - r["accuracy"])
    saved = json.loads((trained_run / "eval" / "val-tta" / "robustness.json").read_text())
    assert saved == json.loads(json.dumps(metrics["robustness"]))
    assert metrics["tta"] is True
    # each variant keeps its own folder: TTA never overwrites the plain evaluation
    kept = json.loads((trained_run / "eval" / "val" / "metrics.json").read_text())
    assert kept["tta"] is False and kept["overall"] == json.loads(json.dumps(plain["overall"]))
    evaluate_run(trained_run, split="val", checkpoint="last", backend="torch", tta=True)
    assert json.loads((trained_run / "eval" / "val-last-tta" / "metrics.json").read_text())["checkpoint"] == "last"


def test_evaluation_reports_the_review_bin_and_calibration(trained_run: Path):
    metrics = evaluate_run(trained_run, split="test")
    at = metrics["selective"]["at_threshold"]
    rows = list(csv.DictReader((trained_run / "eval" / "test" / "predictions.csv").open()))
    kept = [r for r in rows if max(float(v) for k, v in r.items() if k.startswith("prob_")) >= at["threshold"]]
    assert at["n"] == len(rows) and at["n_accepted"] == len(kept)
    assert at["coverage"] == pytest.approx(len(kept) / len(rows))
    curve = metrics["selective"]["risk_coverage"]
    assert curve["coverage"][-1] == pytest.approx(1.0)
    assert curve["risk"][-1] == pytest.approx(1 - metrics["overall"]["accuracy"])
    calibration = metrics["selective"]["calibration"]
    assert calibration["ece_after"] == pytest.approx(metrics["overall"]["ece"])


def test_evaluate_reports_a_rare_class_with_a_threshold_chosen_on_validation(trained_run: Path, capsys):
    assert main(["evaluate", str(trained_run), "--positive", "GBI", "--target-sensitivity", "0.9"]) == 0
    printed = capsys.readouterr().out
    out = trained_run / "eval" / "test"
    metrics = json.loads((out / "metrics.json").read_text())
    point = metrics["rare_class"]["operating_point"]
    # The threshold is the highest reaching 90 % sensitivity on the validation split, scored by the same model ...
    val = list(csv.DictReader((out / "val_predictions.csv").open()))
    val_split = json.loads((trained_run / "splits.json").read_text())["splits"]["val"]
    assert sorted(r["path"] for r in val) == sorted(e["path"] for e in val_split)
    val_gbi = sorted((float(r["prob_GBI"]) for r in val if r["true"] == "GBI"), reverse=True)
    assert point["threshold"] == val_gbi[math.ceil(0.9 * len(val_gbi)) - 1] and point["same_cells"] is False
    # ... and is measured on the test cells.
    test = list(csv.DictReader((out / "predictions.csv").open()))
    caught = [float(r["prob_GBI"]) >= point["threshold"] for r in test if r["true"] == "GBI"]
    assert point["test"]["counts"]["tp"] == sum(caught) and point["test"]["counts"]["fn"] == len(caught) - sum(caught)
    assert metrics["intervals"]["n_boot"] == 1000 and isinstance(metrics["warnings"], list)
    assert "rare class 'GBI'" in printed and f"threshold {point['threshold']:.3f}" in printed
    assert "bootstrap interval over 1000 resamples" in printed
    assert main(["evaluate", str(trained_run), "--positive", "LYMPHOCYTE"]) == 2
    assert "is not one of the model's classes" in capsys.readouterr().err
