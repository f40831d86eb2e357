"""``neunn experiment cv``: stratified k-fold cross-validation in which every image is tested exactly once, pooled into
one evaluation with intervals.

    results = run_cross_validation(CrossValidationSettings("data/", "exp/cv", folds=5, positive="vacuolated",
                                                           target_sensitivity=0.9))
    # exp/cv/experiment.json        the settings; a later call with other ones is refused
    # exp/cv/splits/fold-1.json...  every fold's train/val/test split, saved before any training (nothing can leak)
    # exp/cv/fold-1/ ... fold-5/    normal run folders (train, evaluate, predict, serve work on each)
    # exp/cv/pooled/                predictions.csv (with each cell's fold), metrics.json, report.html
    # exp/cv/results.json, .md      each fold's headline figures beside the pooled ones

Each fold trains on the other folds (its validation images carved from them per class, in the config's train:val
proportion) and is evaluated on its own test fold; with a target sensitivity, each fold chooses its threshold on its own
validation split and applies it to its own test cells. The pooled out-of-fold predictions cover the whole dataset, so
their intervals are as narrow as the data allow; they resample cells, not folds or training runs. Running the command
again skips finished folds, resumes an interrupted one from its last checkpoint, and refuses other settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neunn.atomic import write_text_atomic
from neunn.checkpoint import read_checkpoint_meta
from neunn.data.scan import scan_dataset
from neunn.data.split import DatasetSplit, load_split, save_split, stratified_folds
from neunn.errors import NeunnError
from neunn.experiments.folder import open_experiment
from neunn.evaluation.evaluate import evaluate_run, summarise_predictions, write_evaluation
from neunn.evaluation.metrics import read_predictions_csv
from neunn.evaluation.rare_class import resolve_positive
from neunn.experiments.cross_validation_report import results_markdown, summarise_folds
from neunn.log import say
from neunn.rundir import RunDir, pooled_evaluation
from neunn.runtime import resolve_device
from neunn.training.config import TrainConfig, resolve_config
from neunn.training.setup import open_training_run
from neunn.training.train import train

POOLED_CHOICE = "the validation split of each fold"


FoldOverrides = Callable[[int, Path], list[str]]  # (fold number, its split file) -> overrides of that fold's config


@dataclass(frozen=True)
class CrossValidationSettings:
    """A cross-validation: the dataset and experiment folder, the folds, the classifier config (preset and overrides)
    and how each fold is evaluated. ``fold_overrides(fold, split_file)`` adds config overrides made for one fold (e.g.
    synthetic images made from that fold's training cells only); it is called only when the fold starts training."""

    data_dir: str | Path
    out: str | Path
    folds: int = 5
    seed: int = 0
    preset: str | None = None
    overrides: Sequence[str] = ()
    positive: str | None = None
    target_sensitivity: float | None = None
    tta: bool = False
    fold_overrides: FoldOverrides | None = None
    progress: bool = True

    def saved(self) -> dict[str, Any]:
        """What defines the folds and their training: OUT/experiment.json, checked when the experiment is continued."""
        return {"data_dir": str(Path(self.data_dir).resolve()), "folds": self.folds, "seed": self.seed,
                "preset": self.preset, "overrides": list(self.overrides)}


def _validation_fraction(cfg: TrainConfig) -> float:
    """The share of each fold's training images kept for validation: the config's val / (train + val)."""
    train_share, val_share, _ = cfg.split
    if val_share <= 0:
        raise NeunnError("Cross-validation needs validation images to pick the best epoch; set split with a val share.")
    return val_share / (train_share + val_share)


def _fold_splits(out: Path, folds: list[DatasetSplit]) -> list[Path]:
    """The split file of every fold: the saved ones, else these folds saved (once, before any training)."""
    paths = [out / "splits" / f"fold-{i}.json" for i in range(1, len(folds) + 1)]
    if not all(p.is_file() for p in paths):
        (out / "splits").mkdir(parents=True, exist_ok=True)
        for split, path in zip(folds, paths):
            save_split(split, path)
    return paths


def _evaluation_matches(metrics: dict[str, Any], positive: str | None, target_sensitivity: float | None) -> bool:
    """Whether a fold's saved evaluation reports the rare class and operating point asked for now."""
    rare = metrics.get("rare_class") or {}
    point = rare.get("operating_point") or {}
    return rare.get("positive") == positive and point.get("target_sensitivity") == target_sensitivity


def _training_finished(run: RunDir) -> bool:
    """A finished run's best checkpoint carries the temperature fitted after the last epoch."""
    best = run.checkpoint("best").with_suffix(".safetensors")
    return best.is_file() and "calibration" in read_checkpoint_meta(best)


def _run_fold(settings: CrossValidationSettings, fold: int, split_file: Path, cfg: TrainConfig,
              positive: str | None) -> dict[str, Any]:
    """Train (or continue) fold ``fold`` and evaluate it on its test split; reuses finished work. A resumed fold keeps
    its saved config (``fold_overrides`` is not called for it)."""
    data, fold_dir, tta = Path(settings.data_dir), Path(settings.out) / f"fold-{fold}", settings.tta
    run = RunDir(fold_dir)
    saved_file = run.evaluation("test", tta=tta).metrics
    saved = json.loads(saved_file.read_text()) if saved_file.is_file() else None
    if saved is not None and _evaluation_matches(saved, positive, settings.target_sensitivity):
        say(f"{fold_dir.name}: done, skipped")
        return saved
    if not _training_finished(run):
        resume = run.has_run()
        say(f"{fold_dir.name}: {'resuming' if resume else 'training'}")
        if not resume and settings.fold_overrides is not None:
            cfg = resolve_config(preset=settings.preset, overrides=[*settings.overrides,
                                                                    *settings.fold_overrides(fold, split_file)])
        train(open_training_run(data, fold_dir, None if resume else cfg, resume=resume,
                                split_file=None if resume else split_file, progress=settings.progress))
    return evaluate_run(fold_dir, data_dir=data, split="test", device=str(resolve_device(cfg.device)), tta=tta,
                        positive=positive, target_sensitivity=settings.target_sensitivity)


def _pooled_rows(fold_dirs: list[Path], tta: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Every fold's test predictions, read back from its predictions.csv, with the fold number; and the classes."""
    rows, classes = [], None
    for fold, fold_dir in enumerate(fold_dirs, start=1):
        paths, fold_classes, labels, probs = read_predictions_csv(RunDir(fold_dir).evaluation("test", tta=tta).predictions)
        if classes is not None and fold_classes != classes:
            raise NeunnError(f"{fold_dir} predicts other classes than fold 1 ({', '.join(fold_classes)}).")
        classes = fold_classes
        rows += [{"path": path, "true": classes[label], "pred": classes[int(p.argmax())], "probs": p.tolist(),
                  "fold": fold} for path, label, p in zip(paths, labels, probs)]
    return rows, classes


def _check_tested_once(rows: list[dict[str, Any]], splits: list[DatasetSplit]) -> None:
    """Refuse pooled predictions in which an image is tested twice or was never in a test fold."""
    tested = [r["path"] for r in rows]
    expected = {e.path for split in splits for e in split.splits["test"]}
    if len(tested) != len(set(tested)) or not set(tested) <= expected:
        raise NeunnError("The folds' test predictions overlap or include images outside the test folds; start a new "
                         "--out.")
    if len(tested) < len(expected):
        say(f"note: {len(expected) - len(tested)} image(s) of the test folds could not be read and are not pooled")


def _pooled_choice(fold_metrics: list[dict[str, Any]], rows: list[dict[str, Any]],
                   target_sensitivity: float | None) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    """The operating point pooled over folds: each fold's own threshold, applied to its own test cells."""
    if target_sensitivity is None:
        return None, None
    points = [m["rare_class"]["operating_point"] for m in fold_metrics]
    folds = [{"fold": i, "threshold": p["threshold"], "validation": p["validation"]}
             for i, p in enumerate(points, start=1)]
    choice = {"target_sensitivity": target_sensitivity, "threshold": None, "chosen_on": POOLED_CHOICE,
              "folds": folds, "same_cells": False}
    if any(f["threshold"] is None for f in folds):
        return choice, None
    return choice, np.array([folds[r["fold"] - 1]["threshold"] for r in rows])


def run_cross_validation(settings: CrossValidationSettings) -> dict[str, Any]:
    """Train and evaluate every fold, pool their test predictions; writes OUT/pooled/ and OUT/results.{json,md}."""
    out, data, folds, tta = Path(settings.out), Path(settings.data_dir), settings.folds, settings.tta
    target_sensitivity = settings.target_sensitivity
    cfg = resolve_config(preset=settings.preset, overrides=list(settings.overrides))  # validated before anything runs
    scan = scan_dataset(data, progress=settings.progress)
    scan.require_usable()
    classes = scan.classes
    positive = resolve_positive(classes, [classes.index(r.label) for r in scan.images], settings.positive,
                                target_sensitivity)
    made = stratified_folds(scan.images, folds, seed=settings.seed, val_fraction=_validation_fraction(cfg))
    open_experiment(out, settings.saved(), what="cross-validation")
    split_files = _fold_splits(out, made)  # a continued experiment keeps its saved folds, even if the data grew
    splits = [load_split(p) for p in split_files]
    fold_dirs = [out / f"fold-{i}" for i in range(1, folds + 1)]
    say(f"cross-validation: {folds} folds of {data}, {len(scan.images)} images, test folds of "
        f"{', '.join(str(len(s.splits['test'])) for s in splits)} images")

    fold_metrics = [_run_fold(settings, fold, split_file, cfg, positive)
                    for fold, split_file in enumerate(split_files, start=1)]
    rows, pooled_classes = _pooled_rows(fold_dirs, tta)
    _check_tested_once(rows, splits)
    choice, thresholds = _pooled_choice(fold_metrics, rows, target_sensitivity)
    pooled = summarise_predictions(rows, pooled_classes, positive=positive, choice=choice, thresholds=thresholds)
    pooled.update({"split": "pooled out-of-fold test", "folds": folds, "tta": tta,
                   "synthetic_data": any(m.get("synthetic_data") for m in fold_metrics)})
    write_evaluation(pooled_evaluation(out), pooled, rows, image_root=data, training_log=None, extra_columns=("fold",),
                     title=f"NeuNN {folds}-fold cross-validation: {out.name} (pooled out-of-fold predictions)")
    results = summarise_folds(fold_metrics, pooled, settings=settings.saved(), tta=tta)
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=False))
    write_text_atomic(out / "results.md", results_markdown(results))
    return results
