"""Checks that the HTML report is self-contained, complete, escaped and robust to missing images and logs."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neunn import NEUTROPHIL_CLASSES
from neunn.errors import NeunnError
from neunn.evaluation.intervals import bootstrap_intervals
from neunn.evaluation.metrics import PAPER_METRICS, compute_metrics
from neunn.evaluation.rare_class import choose_threshold, rare_class_report
from neunn.evaluation.report import confusion_matrix_figure, figure_to_png, write_report

CLASSES = list(NEUTROPHIL_CLASSES)
TRAINING_LOG = [{"epoch": e, "train_loss": 2.0 / (e + 1), "val_loss": 2.2 / (e + 1), "val_accuracy": 0.5 + 0.04 * e,
                 "val_macro_f1": 0.45 + 0.04 * e, "lr": 1e-3 * 0.8 ** e} for e in range(8)]
EXTERNAL_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def make_evaluation(root: Path, n: int = 70, seed: int = 0) -> tuple[dict, list[dict]]:
    """Create one small image per sample under root and return (metrics, prediction rows) with some errors."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    logits = rng.normal(size=(n, len(CLASSES))) + 1.2 * np.eye(len(CLASSES))[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predictions = []
    for i, (label, row) in enumerate(zip(labels, probs)):
        relative = f"{CLASSES[label]}/cell_{i:03d}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (60, 64), (int(30 * label), 120, 200)).save(root / relative)
        predictions.append({"path": relative, "true": CLASSES[label], "pred": CLASSES[int(row.argmax())],
                            "probs": row.tolist()})
    return compute_metrics(labels, probs, CLASSES).to_json(), predictions


def errors_by_confidence(predictions: list[dict]) -> list[dict]:
    """Misclassified rows, most confident first, as the report orders them."""
    errors = [row for row in predictions if row["true"] != row["pred"]]
    return sorted(errors, key=lambda row: -max(row["probs"]))


def test_full_report_is_self_contained_and_complete(tmp_path: Path) -> None:
    metrics, predictions = make_evaluation(tmp_path / "images")
    n_errors = len(errors_by_confidence(predictions))
    assert n_errors > 8  # the fixture must exercise the error-grid limit below
    out = write_report(tmp_path / "out" / "report.html", metrics=metrics, predictions=predictions,
                       image_root=tmp_path / "images", training_log=TRAINING_LOG,
                       title="Evaluation <script>alert(1)</script>",
                       synthetic_note="Phantom data: synthetic images, not real cells", max_error_images=8)
    html = out.read_text(encoding="utf-8")
    assert out == tmp_path / "out" / "report.html" and out.is_file()
    assert not EXTERNAL_REFERENCE.search(html)
    assert "<script" not in html and "&lt;script&gt;" in html  # the title is escaped, not executed
    for name in CLASSES:
        assert f"<td>{name}</td>" in html
    assert f"{100 * PAPER_METRICS['accuracy']:.1f}" in html and "Barrera" in html
    assert f"{100 * metrics['overall']['macro']['f1']:.1f}" in html
    assert "Phantom data: synthetic images, not real cells" in html
    assert html.count("data:image/jpeg;base64,") == 8
    assert html.count("data:image/png;base64,") == 3  # confusion matrices, training curves, ROC curves
    assert f"{n_errors} misclassified images" in html


def test_report_survives_missing_image_and_no_training_log(tmp_path: Path) -> None:
    metrics, predictions = make_evaluation(tmp_path / "images", n=35, seed=1)
    errors = errors_by_confidence(predictions)
    (tmp_path / "images" / errors[0]["path"]).unlink()
    (tmp_path / "images" / errors[1]["path"]).write_bytes(b"not an image")
    out = write_report(tmp_path / "report.html", metrics=metrics, predictions=predictions,
                       image_root=tmp_path / "images", training_log=None, title="No log")
    html = out.read_text(encoding="utf-8")
    assert html.count("data:image/jpeg;base64,") == len(errors) - 2
    assert errors[0]["path"] not in html and errors[1]["path"] not in html
    assert errors[2]["path"] in html
    assert "No training log" in html
    assert "banner" not in html.split("<main>")[1].split("<section")[0]  # no synthetic note given


def test_error_grid_is_most_confident_first_and_works_without_images(tmp_path: Path) -> None:
    metrics, predictions = make_evaluation(tmp_path / "images", n=35, seed=2)
    errors = errors_by_confidence(predictions)
    out = write_report(tmp_path / "report.html", metrics=metrics, predictions=predictions, image_root=None,
                       training_log=[{"epoch": 1}], title="Text only", max_error_images=3)
    html = out.read_text(encoding="utf-8")
    assert "data:image/jpeg" not in html
    positions = [html.index(row["path"]) for row in errors[:3]]
    assert positions == sorted(positions)
    assert errors[3]["path"] not in html
    assert f"{100 * max(errors[0]['probs']):.1f}%" in html


def test_report_rejects_predictions_with_unknown_class(tmp_path: Path) -> None:
    metrics, predictions = make_evaluation(tmp_path / "images", n=14)
    predictions[0]["true"] = "LYMPHOCYTE"
    with pytest.raises(NeunnError, match="not one of"):
        write_report(tmp_path / "r.html", metrics=metrics, predictions=predictions, image_root=None,
                     training_log=None, title="bad")


def test_confusion_matrix_figure_is_a_legible_png() -> None:
    matrix = np.array([[50, 3, 0], [4, 40, 6], [0, 0, 0]])  # last class absent: its row must not become NaN
    png = figure_to_png(confusion_matrix_figure(matrix, ["NEU", "HYP", "CRY"]))
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 250


def test_report_opens_in_headless_chromium(tmp_path: Path) -> None:
    browser = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "chrome")
                    if shutil.which(name)), None)
    if browser is None:
        pytest.skip("no Chromium or Chrome on PATH")
    metrics, predictions = make_evaluation(tmp_path / "images", n=21)
    out = write_report(tmp_path / "report.html", metrics=metrics, predictions=predictions,
                       image_root=tmp_path / "images", training_log=TRAINING_LOG, title="Browser check")
    screenshot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", f"--screenshot={screenshot}",
                    "--window-size=1200,2400", out.as_uri()], check=True, timeout=60, capture_output=True)
    with Image.open(screenshot) as image:
        assert image.size == (1200, 2400)


def test_report_shows_intervals_warnings_and_the_rare_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    labels = (rng.random(120) < 0.1).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(size=120) + 2.0 * labels - 2.5)))
    probs = np.stack([1 - score, score], axis=1)
    classes = ["normal", "vacuolated"]
    predictions = [{"path": f"cell_{i}.png", "true": classes[t], "pred": classes[int(p.argmax())], "probs": p.tolist()}
                   for i, (t, p) in enumerate(zip(labels, probs))]
    intervals = bootstrap_intervals(labels, probs, classes, n_boot=200)
    metrics = replace(compute_metrics(labels, probs, classes), intervals=intervals).to_json()
    choice = choose_threshold(probs[:60, 1], labels[:60] == 1, 0.9)
    metrics["rare_class"] = rare_class_report(labels, probs, classes, "vacuolated", choice=choice, n_boot=200)
    metrics["warnings"] = ["The model never predicts 'vacuolated' (0 of 7 such cells found): accuracy <b>"]
    html = write_report(tmp_path / "report.html", metrics=metrics, predictions=predictions, image_root=None,
                        training_log=None, title="Rare").read_text(encoding="utf-8")
    accuracy = metrics["intervals"]["overall"]["accuracy"]
    assert f"[{100 * accuracy['low']:.1f}, {100 * accuracy['high']:.1f}]" in html
    assert "bootstrap interval over 200 resamples" in html
    assert 'id="warnings"' in html and "accuracy &lt;b&gt;" in html  # shown, and escaped
    assert html.index('id="warnings"') < html.index('id="overall"')
    rare = metrics["rare_class"]
    assert 'id="rare-class"' in html and f"{100 * rare['average_precision']['value']:.1f}" in html
    assert f"threshold {choice['threshold']:.3f}" in html
    assert html.count("data:image/png;base64,") == 3  # confusion matrices, ROC curves, precision-recall curve
