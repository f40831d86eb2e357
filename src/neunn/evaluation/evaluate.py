"""Evaluate a run on one split of its dataset (or on every image of another dataset) and write the paper's metrics.

    metrics = evaluate_run("runs/b7", split="test")
    # RUN_DIR/eval/test/metrics.json, predictions.csv (recomputes every metric), report.html (self-contained)

The split is the run's own splits.json, checked against the files on disk: a test set that changed is an error, never a
silent re-split. ``split="all"`` scores every image of ``data_dir`` whose class the model knows (an external test set).

Every headline metric gets a bootstrap interval (:mod:`neunn.evaluation.intervals`), misleading tables get warnings
(:mod:`neunn.evaluation.caveats`), and a rare ``positive`` class gets its own figures
(:mod:`neunn.evaluation.rare_class`): with ``target_sensitivity`` the run's validation split is scored by the same
Predictor (val_predictions.csv) to choose the threshold that is then measured on the evaluated cells.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from neunn.atomic import write_atomic, write_text_atomic
from neunn.data.phantom import GENERATOR as PHANTOM_GENERATOR
from neunn.data.scan import ImageRecord, report_scan, scan_dataset
from neunn.data.split import SPLIT_NAMES, load_split, verify_split_files
from neunn.errors import NeunnError
from neunn.evaluation.caveats import metric_warnings
from neunn.evaluation.intervals import N_BOOT, bootstrap_intervals
from neunn.evaluation.metric_results import MetricResults
from neunn.evaluation.metrics import compute_metrics
from neunn.evaluation.out_of_domain import flag_report, ood_columns
from neunn.evaluation.perturbations import Perturbation, parse_perturbations
from neunn.evaluation.rare_class import choose_threshold, rare_class_report, resolve_positive
from neunn.evaluation.report import write_report
from neunn.evaluation.selective import selective_report
from neunn.inference.predictor import Predictor
from neunn.log import progress, say
from neunn.rundir import EvalDir, RunDir

EVAL_SPLITS = (*SPLIT_NAMES, "all")
BOOT_SEED = 0  # one fixed seed: the intervals in metrics.json recompute from predictions.csv


def _entries_to_score(run: RunDir, data_dir: Path, split: str,
                      classes: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(relative path, true class) pairs to evaluate, after checking the dataset against the run's split; and a
    warning when a folder scored whole (``all``) holds images the run learnt from or chose its epoch on."""
    if split == "all":
        scan = scan_dataset(data_dir, progress=True)
        report_scan(scan)
        unknown = [c for c in scan.classes if c not in classes]
        if unknown:
            say(f"note: classes unknown to the model are left out: {', '.join(unknown)}")
        kept = [r for r in scan.images if r.label in classes]
        return [(r.path, r.label) for r in kept], _seen_warning(run, kept)
    dataset_split = load_split(run.splits)
    verify_split_files(dataset_split, data_dir, names=(split,))  # hashes only this split's files
    return [(e.path, e.label) for e in dataset_split.splits[split]], []


def _seen_warning(run: RunDir, images: list[ImageRecord]) -> list[str]:
    """A warning when some of ``images`` (by their bytes) are in the run's training or validation split."""
    if not run.splits.is_file():
        return []
    split = load_split(run.splits)
    seen = {e.sha256 for name in ("train", "val") for e in split.splits.get(name, [])}
    n = sum(r.sha256 in seen for r in images)
    if not n:
        return []
    return [f"{n} of the {len(images)} cells scored are images this run trained on or chose its epoch on (the same "
            "file bytes as its training or validation split): these figures are optimistic; score cells it never "
            "saw (its test split, or another folder)."]


def _is_synthetic(data_dir: Path) -> bool:
    manifest = data_dir / "manifest.json"
    try:
        data = json.loads(manifest.read_text()) if manifest.is_file() else {}
    except (OSError, ValueError):
        return False
    return bool(data.get("synthetic")) or data.get("generator") == PHANTOM_GENERATOR


def _write_predictions_csv(path: Path, rows: list[dict[str, Any]], classes: list[str],
                           extra_columns: tuple[str, ...] = ()) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "true", "pred", *(f"prob_{c}" for c in classes), "out_of_domain", "ood_score",
                             *extra_columns])
            for row in rows:
                writer.writerow([row["path"], row["true"], row["pred"], *(repr(p) for p in row["probs"]),
                                 *ood_columns(row), *(row[c] for c in extra_columns)])

    write_atomic(path, write)


def _score(predictor: Predictor, data_dir: Path, entries: list[tuple[str, str]], transform: Callable | None = None,
           desc: str = "evaluate") -> tuple[list[dict[str, Any]], list[str]]:
    """Prediction rows for (path, true class) entries, and the files that could not be read."""
    rows, failed = [], []
    paths = (data_dir / p for p, _ in entries)
    predictions = progress(predictor.predict_files(paths, transform=transform), total=len(entries), desc=desc)
    for (path, true), pred in zip(entries, predictions):
        if pred.error:
            failed.append(f"{path}: {pred.error}")
        else:
            rows.append({"path": path, "true": true, "pred": pred.label, "probs": pred.probs,
                         "needs_review": pred.needs_review, "out_of_domain": pred.out_of_domain,
                         "ood_score": pred.ood_score})
    return rows, failed


def _arrays(rows: list[dict[str, Any]], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(true class indices, probabilities) of prediction rows."""
    index = {c: i for i, c in enumerate(classes)}
    return (np.asarray([index[r["true"]] for r in rows], dtype=np.int64),
            np.asarray([r["probs"] for r in rows], dtype=np.float64))


def _metrics_of(rows: list[dict[str, Any]], classes: list[str]) -> MetricResults:
    return compute_metrics(*_arrays(rows, classes), classes)


def summarise_predictions(rows: list[dict[str, Any]], classes: list[str], *, positive: str | None = None,
                          choice: dict[str, Any] | None = None, thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """The metrics.json dict of prediction rows: compute_metrics with bootstrap intervals, the rare-class figures of
    ``positive`` (and its operating point, given a threshold ``choice`` or per-cell ``thresholds``) and the warnings."""
    labels, probs = _arrays(rows, classes)
    intervals = bootstrap_intervals(labels, probs, classes, n_boot=N_BOOT, seed=BOOT_SEED)
    metrics = replace(compute_metrics(labels, probs, classes), intervals=intervals).to_json()
    metrics["rare_class"] = None if positive is None else rare_class_report(
        labels, probs, classes, positive, choice=choice, thresholds=thresholds, n_boot=N_BOOT, seed=BOOT_SEED)
    metrics["warnings"] = metric_warnings(metrics)
    return metrics


def _threshold_choice(run: RunDir, predictor: Predictor, data_dir: Path, split: str, rows: list[dict[str, Any]],
                      positive: str, target_sensitivity: float, out: EvalDir) -> dict[str, Any]:
    """Choose the rare-class threshold on the run's validation split, scored by the same predictor."""
    if split != "val":
        # An external set (split "all") has no validation split: the run's own dataset holds it.
        val_dir = Path(run.read_info().get("data_dir") or data_dir) if split == "all" else data_dir
        entries, _ = _entries_to_score(run, val_dir, "val", predictor.classes)
        rows, _ = _score(predictor, val_dir, entries, desc="validation")
        _write_predictions_csv(out.val_predictions, rows, predictor.classes)
    labels, probs = _arrays(rows, predictor.classes)
    k = predictor.classes.index(positive)
    return {**choose_threshold(probs[:, k], labels == k, target_sensitivity), "same_cells": split == "val"}


def write_evaluation(out: EvalDir, metrics: dict[str, Any], rows: list[dict[str, Any]], *, image_root: Path | None,
                     training_log: list[dict[str, Any]] | None, title: str,
                     extra_columns: tuple[str, ...] = ()) -> None:
    """Write one evaluation's metrics.json, predictions.csv (``extra_columns`` of the rows appended) and report.html."""
    out.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.metrics, json.dumps(metrics, indent=1, allow_nan=False))
    _write_predictions_csv(out.predictions, rows, metrics["classes"], extra_columns)
    note = "Phantom data: procedurally generated synthetic images, not real cells." if metrics.get("synthetic_data") \
        else None
    write_report(out.report, metrics=metrics, predictions=rows, image_root=image_root,
                 training_log=training_log, title=title, synthetic_note=note)


def _robustness(predictor: Predictor, data_dir: Path, entries, clean: MetricResults,
                perturbations: list[Perturbation]) -> dict[str, Any]:
    """Accuracy and macro-F1 of the same images under each perturbation, with the drop from the clean images."""
    table = [{"perturbation": "none", "accuracy": clean.overall.accuracy, "macro_f1": clean.overall.macro.f1,
              "accuracy_drop": 0.0}]
    for perturbation in perturbations:
        say(f"robustness: {perturbation}")
        rows, _ = _score(predictor, data_dir, entries, transform=perturbation, desc=str(perturbation))
        m = _metrics_of(rows, predictor.classes).overall
        table.append({"perturbation": str(perturbation), "accuracy": m.accuracy, "macro_f1": m.macro.f1,
                      "accuracy_drop": clean.overall.accuracy - m.accuracy})
    return {"n": clean.n, "rows": table}


def format_robustness_table(robustness: dict[str, Any]) -> str:
    """Plain-text table of accuracy per perturbation, in percent."""
    lines = [f"{'perturbation':<18}{'accuracy':>10}{'macro-F1':>10}{'drop':>8}", "-" * 46]
    for r in robustness["rows"]:
        lines.append(f"{r['perturbation']:<18}{100 * r['accuracy']:>10.1f}{100 * r['macro_f1']:>10.1f}"
                     f"{100 * r['accuracy_drop']:>8.1f}")
    return "\n".join(lines)


def evaluate_run(
    run_dir: str | Path, *, data_dir: str | Path | None = None, split: str = "test", checkpoint: str = "best",
    device: str = "cpu", tta: bool = False, perturb: list[str] | None = None, backend: str = "torch",
    review_threshold: float | None = None, critical: str | None = None, positive: str | None = None,
    target_sensitivity: float | None = None,
) -> dict[str, Any]:
    """Score a run's checkpoint on a split; writes metrics.json, predictions.csv and report.html and returns metrics.

    ``backend`` (torch, onnx, onnx-int8) scores with that engine; ``tta`` averages the 8 flips/rotations of each
    cell. Each variant writes to its own folder (``RunDir.evaluation``: eval/test, eval/test-tta, eval/test-onnx-int8,
    ...), so the accuracy of an exported or quantized model, or with TTA, sits beside the plain one. ``perturb`` (e.g.
    ``["standard"]``) adds a robustness table (robustness.json) of the same images under stain, colour, blur, JPEG and
    resolution changes. ``review_threshold`` and ``critical`` override the model's decision policy; the policy in
    force is recorded in metrics.json. ``positive`` names a rare class for ROC AUC, average precision and the
    precision-recall curve (default: the rarer class of a two-class model); ``target_sensitivity`` adds its operating
    point, a threshold chosen on the run's validation split and measured on this split.
    """
    perturbations = parse_perturbations(perturb or [])
    if split not in EVAL_SPLITS:
        raise NeunnError(f"Unknown split '{split}'; use one of {', '.join(EVAL_SPLITS)}.")
    run = RunDir(Path(run_dir))
    run.require_trained()
    if data_dir is None:
        data_dir = run.read_info().get("data_dir")
        if data_dir is None:
            raise NeunnError(f"{run.root} does not record its dataset folder; pass it with --data.")
    data_dir = Path(data_dir)
    predictor = Predictor.from_run(run.root, checkpoint=checkpoint, device=device, tta=tta, backend=backend,
                                   review_threshold=review_threshold, critical=critical)
    classes = predictor.classes
    entries, seen_warning = _entries_to_score(run, data_dir, split, classes)
    if not entries:
        raise NeunnError(f"The {split} split of {run.root} has no images to evaluate.")
    positive = resolve_positive(classes, [classes.index(label) for _, label in entries], positive, target_sensitivity)

    rows, failed = _score(predictor, data_dir, entries)
    for line in failed:
        say(f"  skipped {line}")
    if not rows:
        raise NeunnError(f"None of the {len(entries)} images of the {split} split could be read.")

    out = run.evaluation(split, backend, checkpoint=checkpoint, tta=tta)
    out.root.mkdir(parents=True, exist_ok=True)
    choice = None if target_sensitivity is None else _threshold_choice(
        run, predictor, data_dir, split, rows, positive, target_sensitivity, out)
    metrics = summarise_predictions(rows, classes, positive=positive, choice=choice)
    metrics["warnings"] = seen_warning + metrics["warnings"]
    index = {c: i for i, c in enumerate(classes)}
    # What the "Unidentified — review" bin buys at the run's threshold, the risk–coverage curve, and ECE before/after
    # temperature scaling (with --tta the "before" is recovered from averaged probabilities, so it is approximate).
    metrics["selective"] = selective_report(np.asarray([r["probs"] for r in rows]), [index[r["true"]] for r in rows],
                                            threshold=predictor.policy.review_threshold, temperature=predictor.temperature)
    metrics["split"], metrics["checkpoint"], metrics["tta"], metrics["skipped"] = split, checkpoint, tta, failed
    metrics["backend"], metrics["policy"] = backend, predictor.policy.as_dict()
    metrics["synthetic_data"] = _is_synthetic(data_dir)
    metrics["out_of_domain"] = flag_report(rows, predictor.ood)

    write_evaluation(out, metrics, rows, image_root=data_dir, training_log=run.read_log(),
                     title=f"NeuNN evaluation: {run.root.name} ({split} split"
                     + ("" if backend == "torch" else f", {backend}") + ")")
    if perturbations:  # after the main files: they stand even if a long robustness pass is stopped
        metrics["robustness"] = _robustness(predictor, data_dir, entries, MetricResults.from_json(metrics),
                                            perturbations)
        write_text_atomic(out.robustness, json.dumps(metrics["robustness"], indent=1))
    return metrics
