"""``neunn experiment rare-class --folds K``: the paper's question for a class that is rare as it is, on
cross-validation folds: every arm trains on the same folds, every cell is tested once per arm, and the arms are
compared on the same cells with paired intervals.

    results = run_rare_class_folds(FoldExperimentSettings("data/neutrophils", "exp/vac-arms", class_name="vacuolated",
                                                          folds=5, arms=("a", "c", "d"), paste_from="normal",
                                                          preset="rare-finding"))
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
from collections.abc import Sequence
from dataclasses import dataclass
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
from neunn.experiments.cross_validation import CrossValidationSettings, FoldOverrides, run_cross_validation
from neunn.experiments.folder import open_experiment
from neunn.experiments.rare_class import ARMS, arm_overrides, default_synthetic_count, gan_samples
from neunn.gan.config import resolve_gan_config
from neunn.gan.evaluate import evaluate_gan, summarise
from neunn.log import say
from neunn.rundir import pooled_evaluation
from neunn.training.config import resolve_config

ROW_KEYS = ("rare_roc_auc", "rare_average_precision", "rare_sensitivity", "rare_specificity", "accuracy")


@dataclass(frozen=True)
class FoldExperimentSettings:
    """A rare-class experiment on folds: the dataset and experiment folder, the class, the folds and their seed, the
    arms, the classifier and GAN configs (presets and overrides), the synthetic images added per fold in arms c and d
    (default: up to the median class size), the class painted into in arm d, and how the folds are evaluated."""

    data_dir: str | Path
    out: str | Path
    class_name: str
    folds: int = 5
    seed: int = 0
    arms: Sequence[str] = ("a", "b", "c")
    preset: str | None = None
    overrides: Sequence[str] = ()
    gan_preset: str | None = None
    gan_overrides: Sequence[str] = ()
    n_synthetic: int | None = None
    paste_from: str | None = None
    target_sensitivity: float | None = None
    tta: bool = False
    evaluate_gans: bool = True  # score each fold's GAN samples with arm a's classifier of that fold
    progress: bool = True

    @property
    def data_root(self) -> str:
        """The dataset folder as an absolute path."""
        return str(Path(self.data_dir).resolve())

    def saved(self) -> dict[str, Any]:
        """What defines the experiment: OUT/experiment.json, checked when it is continued. The arms are not part of
        it: each is its own folder, so a later call may add arms, or run one arm per process."""
        return {"data_dir": self.data_root, "class_name": self.class_name, "folds": self.folds, "seed": self.seed,
                "preset": self.preset, "overrides": list(self.overrides), "gan_preset": self.gan_preset,
                "gan_overrides": list(self.gan_overrides), "n_synthetic": self.n_synthetic,
                "paste_from": self.paste_from, "target_sensitivity": self.target_sensitivity, "tta": self.tta}


def _fold_training(split_file: Path, class_name: str) -> list[str]:
    """The relative paths of a fold's training images of ``class_name``."""
    return [e.path for e in load_split(split_file).splits["train"] if e.label == class_name]


def _synthetic_count(settings: FoldExperimentSettings, split_file: Path) -> int:
    return settings.n_synthetic or default_synthetic_count(load_split(split_file), settings.class_name)


def _gan_images(settings: FoldExperimentSettings, fold: int, split_file: Path) -> Path:
    """Fold ``fold``'s GAN, trained on its training images of the class only, and its samples."""
    out = Path(settings.out)
    return gan_samples(settings.data_root, settings.class_name, out / "gan" / f"fold-{fold}",
                       out / "synthetic" / f"fold-{fold}", gan_preset=settings.gan_preset,
                       gan_overrides=list(settings.gan_overrides), seed=fold,
                       n=_synthetic_count(settings, split_file), split_file=split_file, progress=settings.progress)


def _painted_images(settings: FoldExperimentSettings, fold: int, split_file: Path) -> Path:
    """Vacuoles painted into fold ``fold``'s training images of --paste-from (written once)."""
    sources = [Path(settings.data_root) / p for p in _fold_training(split_file, settings.paste_from)]
    return write_painted_folder(sources, Path(settings.out) / "painted" / f"fold-{fold}",
                                class_name=settings.class_name, n=_synthetic_count(settings, split_file), seed=fold)


def _arm_fold_overrides(settings: FoldExperimentSettings, arm: str) -> FoldOverrides:
    """The per-fold overrides of an arm: its balance, and for (c) and (d) the fold's own synthetic folder."""
    def overrides(fold: int, split_file: Path) -> list[str]:
        synthetic = None
        if arm == "c":
            synthetic = _gan_images(settings, fold, split_file)
        elif arm == "d":
            synthetic = _painted_images(settings, fold, split_file)
        return arm_overrides(arm, synthetic, settings.class_name)
    return overrides


def _arm_cross_validation(settings: FoldExperimentSettings, arm: str) -> CrossValidationSettings:
    """The cross-validation of one arm, in OUT/arms/ARM: the experiment's folds, config and evaluation."""
    return CrossValidationSettings(Path(settings.data_dir), Path(settings.out) / "arms" / arm, folds=settings.folds,
                                   seed=settings.seed, preset=settings.preset, overrides=list(settings.overrides),
                                   positive=settings.class_name, target_sensitivity=settings.target_sensitivity,
                                   tta=settings.tta, fold_overrides=_arm_fold_overrides(settings, arm),
                                   progress=settings.progress)


def _pooled_scores(arm_dir: Path, class_name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The pooled out-of-fold cells of an arm (by path), whether each is of the class, and its probability."""
    paths, classes, labels, probs = read_predictions_csv(pooled_evaluation(arm_dir).predictions)
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


def run_rare_class_folds(settings: FoldExperimentSettings) -> dict[str, Any]:
    """Run every arm as a cross-validation on the same folds; writes OUT/results.{json,md} and returns the results."""
    from neunn.experiments.rare_class_folds_report import results_markdown

    out, data, arms, folds = Path(settings.out), Path(settings.data_dir), list(settings.arms), settings.folds
    class_name, paste_from = settings.class_name, settings.paste_from
    bad = [a for a in arms if a not in ARMS]
    if bad or not arms:
        raise NeunnError(f"Unknown arm '{bad[0] if bad else ''}'; choose among {', '.join(ARMS)}.")
    resolve_config(preset=settings.preset, overrides=list(settings.overrides))  # validated before anything runs
    if "c" in arms:
        resolve_gan_config(preset=settings.gan_preset, overrides=list(settings.gan_overrides))
    scan = scan_dataset(data, progress=settings.progress)
    for name, what in ((class_name, "--class"), (paste_from, "--paste-from")):
        if name is not None and name not in scan.classes:
            raise NeunnError(f"{what} '{name}' is not a class of {data}; its classes are {', '.join(scan.classes)}.")
    if "d" in arms and (paste_from is None or paste_from == class_name):
        raise NeunnError("Arm d paints the finding into cells of another class: give --paste-from CLASS.")
    open_experiment(out, settings.saved(), what="rare-class experiment")
    say(f"rare-class experiment on {folds} folds: {class_name}, arms {', '.join(arms)}")

    arm_results = {}
    for arm in arms:
        say(f"arm ({arm}): {ARMS[arm]}")
        arm_results[arm] = run_cross_validation(_arm_cross_validation(settings, arm))
    gan_quality = {}
    if "c" in arms and "a" in arms and settings.evaluate_gans:
        for fold in range(1, folds + 1):
            quality_dir = out / "gan_quality" / f"fold-{fold}"
            report_file = quality_dir / "quality.json"
            report = (json.loads(report_file.read_text()) if report_file.is_file() else
                      evaluate_gan(out / "gan" / f"fold-{fold}", classifier_run=out / "arms" / "a" / f"fold-{fold}",
                                   out=quality_dir))
            gan_quality[str(fold)] = summarise(report)["classes"][class_name]
    results = {"settings": settings.saved(), "class": class_name, "arms": arms,
               "rows": [_arm_row(arm, arm_results[arm]) for arm in arms],
               "paired_differences": _paired_against(out, arms, "a", class_name),
               "gan_quality": gan_quality}
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=False))
    write_text_atomic(out / "results.md", results_markdown(results))
    return results
