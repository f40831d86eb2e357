"""Evaluate a run on one split of its dataset (or on every image of another dataset) and write the paper's metrics.

    metrics = evaluate_run("runs/b7", split="test")
    # RUN_DIR/eval/test/metrics.json, predictions.csv (recomputes every metric), report.html (self-contained)

The split is the run's own splits.json, checked against the files on disk: a test set that changed is an error, never a
silent re-split. ``split="all"`` scores every image of ``data_dir`` whose class the model knows (an external test set).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from neunn.atomic import write_atomic, write_text_atomic
from neunn.data.phantom import GENERATOR as PHANTOM_GENERATOR
from neunn.data.scan import scan_dataset
from neunn.data.split import SPLIT_NAMES, load_split, verify_split_files
from neunn.errors import NeunnError
from neunn.evaluation.metrics import compute_metrics
from neunn.evaluation.perturbations import Perturbation, parse_perturbations
from neunn.inference.predictor import Predictor
from neunn.evaluation.report import write_report
from neunn.evaluation.selective import selective_report
from neunn.data.scan import report_scan
from neunn.log import progress, say
from neunn.rundir import RunDir

EVAL_SPLITS = (*SPLIT_NAMES, "all")


def _entries_to_score(run: RunDir, data_dir: Path, split: str, classes: list[str]) -> list[tuple[str, str]]:
    """(relative path, true class) pairs to evaluate, after checking the dataset against the run's split."""
    if split == "all":
        scan = scan_dataset(data_dir, progress=True)
        report_scan(scan)
        unknown = [c for c in scan.classes if c not in classes]
        if unknown:
            say(f"note: classes unknown to the model are left out: {', '.join(unknown)}")
        return [(r.path, r.label) for r in scan.images if r.label in classes]
    dataset_split = load_split(run.splits)
    verify_split_files(dataset_split, data_dir, names=(split,))  # hashes only this split's files
    return [(e.path, e.label) for e in dataset_split.splits[split]]


def _is_synthetic(data_dir: Path) -> bool:
    manifest = data_dir / "manifest.json"
    try:
        data = json.loads(manifest.read_text()) if manifest.is_file() else {}
    except (OSError, ValueError):
        return False
    return bool(data.get("synthetic")) or data.get("generator") == PHANTOM_GENERATOR


def _write_predictions_csv(path: Path, rows: list[dict[str, Any]], classes: list[str]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "true", "pred", *(f"prob_{c}" for c in classes)])
            for row in rows:
                writer.writerow([row["path"], row["true"], row["pred"], *(repr(p) for p in row["probs"])])

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
            rows.append({"path": path, "true": true, "pred": pred.label, "probs": pred.probs})
    return rows, failed


def _metrics_of(rows: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    index = {c: i for i, c in enumerate(classes)}
    probs = np.asarray([r["probs"] for r in rows], dtype=np.float64)
    return compute_metrics(np.asarray([index[r["true"]] for r in rows]), probs, classes)


def _robustness(predictor: Predictor, data_dir: Path, entries, clean: dict[str, Any],
                perturbations: list[Perturbation]) -> dict[str, Any]:
    """Accuracy and macro-F1 of the same images under each perturbation, with the drop from the clean images."""
    table = [{"perturbation": "none", "accuracy": clean["overall"]["accuracy"],
              "macro_f1": clean["overall"]["macro"]["f1"], "accuracy_drop": 0.0}]
    for perturbation in perturbations:
        say(f"robustness: {perturbation}")
        rows, _ = _score(predictor, data_dir, entries, transform=perturbation, desc=str(perturbation))
        m = _metrics_of(rows, predictor.classes)["overall"]
        table.append({"perturbation": str(perturbation), "accuracy": m["accuracy"], "macro_f1": m["macro"]["f1"],
                      "accuracy_drop": clean["overall"]["accuracy"] - m["accuracy"]})
    return {"n": clean["n"], "rows": table}


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
    review_threshold: float | None = None, critical: str | None = None,
) -> dict[str, Any]:
    """Score a run's checkpoint on a split; writes metrics.json, predictions.csv and report.html and returns metrics.

    ``backend`` (torch, onnx, onnx-int8) scores with that engine; ``tta`` averages the 8 flips/rotations of each
    cell. Each variant writes to its own folder (``RunDir.eval_dir``: eval/test, eval/test-tta, eval/test-onnx-int8,
    ...), so the accuracy of an exported or quantized model, or with TTA, sits beside the plain one. ``perturb`` (e.g.
    ``["standard"]``) adds a robustness table (robustness.json) of the same images under stain, colour, blur, JPEG and
    resolution changes. ``review_threshold`` and ``critical`` override the model's decision policy; the policy in
    force is recorded in metrics.json.
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
    entries = _entries_to_score(run, data_dir, split, classes)
    if not entries:
        raise NeunnError(f"The {split} split of {run.root} has no images to evaluate.")

    rows, failed = _score(predictor, data_dir, entries)
    for line in failed:
        say(f"  skipped {line}")
    if not rows:
        raise NeunnError(f"None of the {len(entries)} images of the {split} split could be read.")

    metrics = _metrics_of(rows, classes)
    index = {c: i for i, c in enumerate(classes)}
    # What the "Unidentified — review" bin buys at the run's threshold, the risk–coverage curve, and ECE before/after
    # temperature scaling (with --tta the "before" is recovered from averaged probabilities, so it is approximate).
    metrics["selective"] = selective_report(np.asarray([r["probs"] for r in rows]), [index[r["true"]] for r in rows],
                                            threshold=predictor.policy.review_threshold, temperature=predictor.temperature)
    metrics["split"], metrics["checkpoint"], metrics["tta"], metrics["skipped"] = split, checkpoint, tta, failed
    metrics["backend"], metrics["policy"] = backend, predictor.policy.as_dict()
    metrics["synthetic_data"] = _is_synthetic(data_dir)

    out = run.eval_dir(split, backend, checkpoint=checkpoint, tta=tta)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1, allow_nan=False))
    _write_predictions_csv(out / "predictions.csv", rows, classes)
    note = "Phantom data: procedurally generated synthetic images, not real cells." if metrics["synthetic_data"] else None
    if perturbations:
        metrics["robustness"] = _robustness(predictor, data_dir, entries, metrics, perturbations)
        write_text_atomic(out / "robustness.json", json.dumps(metrics["robustness"], indent=1))
    write_report(out / "report.html", metrics=metrics, predictions=rows, image_root=data_dir,
                 training_log=run.read_log(), title=f"NeuNN evaluation: {run.root.name} ({split} split"
                 + ("" if backend == "torch" else f", {backend}") + ")",
                 synthetic_note=note)
    return metrics
