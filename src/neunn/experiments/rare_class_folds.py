"""``neunn experiment rare-class --folds K``: the paper's question for a class that is rare as it is, on
cross-validation folds: every arm trains on the same folds, every cell is tested once per arm, and the arms are
compared on the same cells with paired intervals.

    results = run_rare_class_folds("data/neutrophils", "exp/vac-arms", class_name="vacuolated", folds=5,
                                   arms=("a", "c", "d"), paste_from="normal", preset="rare-finding")
    # exp/vac-arms/arms/a/ ... d/        one `neunn experiment cv` folder per arm (folds, pooled predictions, report)
    # exp/vac-arms/gan/fold-N/, synthetic/fold-N/   arm c: a GAN trained on fold N's training images of the class
    # exp/vac-arms/painted/fold-N/       arm d: vacuoles painted into fold N's training images of --paste-from
    # exp/vac-arms/gan_quality/fold-N/   arm c's samples scored by arm a's classifier of fold N (near-copies too)
    # exp/vac-arms/results.{json,md}     each arm's pooled figures with intervals; paired differences against arm a

A single split of a class with a few dozen images tests a handful of them, and one cell more or less moves its recall
by many points; on folds, every image of the class is tested once in every arm. The synthetic images of a fold are made
from that fold's training split only (its validation and test images never reach the GAN or the painter), so no
near-copy of a tested cell can leak into training. Arm (d) is for vacuole-like findings: pale vacuoles painted into
the cytoplasm of real cells of another class (``--paste-from``), a procedural paste-in that needs no GAN.
Every step is skipped when its output exists, so an interrupted experiment continues where it stopped, and arms may be
run in separate processes on the same OUT (one arm each, after the first has started) and tabled together by a last
call with all of them, which trains nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neunn.atomic import write_text_atomic
from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.data.vacuole_painting import write_painted_folder
from neunn.errors import NeunnError
from neunn.evaluation.metrics import read_predictions_csv
from neunn.evaluation.paired import paired_ranking_difference
from neunn.experiments.cross_validation import run_cross_validation
from neunn.experiments.folder import open_experiment
from neunn.experiments.rare_class import ARMS, arm_overrides, default_synthetic_count, gan_samples
from neunn.gan.config import resolve_gan_config
from neunn.gan.evaluate import evaluate_gan, summarise
from neunn.log import say
from neunn.training.config import resolve_config

ROW_KEYS = ("rare_roc_auc", "rare_average_precision", "rare_sensitivity", "rare_specificity", "accuracy")


@dataclass
class FoldExperimentSettings:
    """What defines a rare-class experiment on folds; saved as OUT/experiment.json and checked when continued. The
    arms are not part of it: each is its own folder, so a later call may add arms, or run one arm per process."""

    data_dir: str
    class_name: str
    folds: int
    seed: int
    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    gan_preset: str | None = None
    gan_overrides: list[str] = field(default_factory=list)
    n_synthetic: int | None = None
    paste_from: str | None = None
    target_sensitivity: float | None = None
    tta: bool = False


def _fold_training(split_file: Path, class_name: str) -> list[str]:
    """The relative paths of a fold's training images of ``class_name``."""
    return [e.path for e in load_split(split_file).splits["train"] if e.label == class_name]


def _synthetic_count(settings: FoldExperimentSettings, split_file: Path) -> int:
    return settings.n_synthetic or default_synthetic_count(load_split(split_file), settings.class_name)


def _gan_images(out: Path, settings: FoldExperimentSettings, fold: int, split_file: Path, progress: bool) -> Path:
    """Fold ``fold``'s GAN, trained on its training images of the class only, and its samples."""
    return gan_samples(settings.data_dir, settings.class_name, out / "gan" / f"fold-{fold}",
                       out / "synthetic" / f"fold-{fold}", gan_preset=settings.gan_preset,
                       gan_overrides=settings.gan_overrides, seed=fold, n=_synthetic_count(settings, split_file),
                       split_file=split_file, progress=progress)


def _painted_images(out: Path, settings: FoldExperimentSettings, fold: int, split_file: Path) -> Path:
    """Vacuoles painted into fold ``fold``'s training images of --paste-from (written once)."""
    sources = [Path(settings.data_dir) / p for p in _fold_training(split_file, settings.paste_from)]
    return write_painted_folder(sources, out / "painted" / f"fold-{fold}", class_name=settings.class_name,
                                n=_synthetic_count(settings, split_file), seed=fold)


def _arm_fold_overrides(out: Path, settings: FoldExperimentSettings, arm: str, progress: bool):
    """The per-fold overrides of an arm: its balance, and for (c) and (d) the fold's own synthetic folder."""
    def overrides(fold: int, split_file: Path) -> list[str]:
        synthetic = None
        if arm == "c":
            synthetic = _gan_images(out, settings, fold, split_file, progress)
        elif arm == "d":
            synthetic = _painted_images(out, settings, fold, split_file)
        return arm_overrides(arm, synthetic, settings.class_name)
    return overrides


def _pooled_scores(arm_dir: Path, class_name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The pooled out-of-fold cells of an arm (by path), whether each is of the class, and its probability."""
    paths, classes, labels, probs = read_predictions_csv(arm_dir / "pooled" / "predictions.csv")
    k = classes.index(class_name)
    order = np.argsort(paths)
    return [paths[i] for i in order], (labels == k)[order], probs[order, k]


def _paired_against(out: Path, arms: list[str], reference: str, class_name: str) -> dict[str, Any]:
    """Each other arm minus ``reference`` in ROC AUC and average precision, on the same pooled cells."""
    if reference not in arms:
        return {}
    ref_paths, positive, ref_scores = _pooled_scores(out / "arms" / reference, class_name)
    differences = {}
    for arm in arms:
        if arm == reference:
            continue
        paths, _, scores = _pooled_scores(out / "arms" / arm, class_name)
        if paths != ref_paths:
            raise NeunnError(f"Arms {reference} and {arm} did not test the same cells; start a new --out.")
        differences[f"{arm}-{reference}"] = paired_ranking_difference(positive, ref_scores, scores)
    return differences


def _arm_row(arm: str, results: dict[str, Any]) -> dict[str, Any]:
    """An arm's pooled figures (value and interval of each column of its cross-validation) and its per-fold AUCs."""
    pooled = results["pooled"]
    return {"arm": arm, "description": ARMS[arm],
            "figures": {key: {"value": pooled["figures"][key], "interval": pooled["intervals"][key]}
                        for key in ROW_KEYS if key in pooled["figures"]},
            "fold_roc_auc": [f["figures"].get("rare_roc_auc") for f in results["folds"]],
            "warnings": results["warnings"]}


def run_rare_class_folds(
    data_dir: str | Path, out: str | Path, *, class_name: str, folds: int = 5, seed: int = 0,
    arms: tuple[str, ...] | list[str] = ("a", "b", "c"), preset: str | None = None, overrides: list[str] | None = None,
    gan_preset: str | None = None, gan_overrides: list[str] | None = None, n_synthetic: int | None = None,
    paste_from: str | None = None, target_sensitivity: float | None = None, tta: bool = False,
    evaluate_gans: bool = True, progress: bool = True,
) -> dict[str, Any]:
    """Run every arm as a cross-validation on the same folds; writes OUT/results.{json,md} and returns the results."""
    from neunn.experiments.rare_class_folds_report import results_markdown

    out, data = Path(out), Path(data_dir)
    bad = [a for a in arms if a not in ARMS]
    if bad or not arms:
        raise NeunnError(f"Unknown arm '{bad[0] if bad else ''}'; choose among {', '.join(ARMS)}.")
    settings = FoldExperimentSettings(str(data.resolve()), class_name, folds, seed, preset,
                                      list(overrides or []), gan_preset, list(gan_overrides or []), n_synthetic,
                                      paste_from, target_sensitivity, tta)
    resolve_config(preset=preset, overrides=overrides)  # validates the overrides before anything runs
    if "c" in arms:
        resolve_gan_config(preset=gan_preset, overrides=gan_overrides)
    scan = scan_dataset(data, progress=progress)
    for name, what in ((class_name, "--class"), (paste_from, "--paste-from")):
        if name is not None and name not in scan.classes:
            raise NeunnError(f"{what} '{name}' is not a class of {data}; its classes are {', '.join(scan.classes)}.")
    if "d" in arms and (paste_from is None or paste_from == class_name):
        raise NeunnError("Arm d paints the finding into cells of another class: give --paste-from CLASS.")
    open_experiment(out, asdict(settings), what="rare-class experiment")
    say(f"rare-class experiment on {folds} folds: {class_name}, arms {', '.join(arms)}")

    arm_results = {}
    for arm in arms:
        say(f"arm ({arm}): {ARMS[arm]}")
        arm_results[arm] = run_cross_validation(
            data, out / "arms" / arm, folds=folds, seed=seed, preset=preset, overrides=list(overrides or []),
            positive=class_name, target_sensitivity=target_sensitivity, tta=tta,
            fold_overrides=_arm_fold_overrides(out, settings, arm, progress), progress=progress)
    gan_quality = {}
    if "c" in arms and "a" in arms and evaluate_gans:
        for fold in range(1, folds + 1):
            quality_dir = out / "gan_quality" / f"fold-{fold}"
            report_file = quality_dir / "quality.json"
            report = (json.loads(report_file.read_text()) if report_file.is_file() else
                      evaluate_gan(out / "gan" / f"fold-{fold}", classifier_run=out / "arms" / "a" / f"fold-{fold}",
                                   out=quality_dir))
            gan_quality[str(fold)] = summarise(report)["classes"][class_name]
    results = {"settings": asdict(settings), "class": class_name, "arms": list(arms),
               "rows": [_arm_row(arm, arm_results[arm]) for arm in arms],
               "paired_differences": _paired_against(out, list(arms), "a", class_name),
               "gan_quality": gan_quality}
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=False))
    write_text_atomic(out / "results.md", results_markdown(results))
    return results
