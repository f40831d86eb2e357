"""``neunn experiment rare-class``: does GAN augmentation help a rare class? The paper's question, on any dataset.

    results = run_rare_class_experiment(ExperimentSettings("data/pbc", "exp/basophil", class_name="basophil",
                                                           keep=100, seeds=(0, 1, 2)))
    # exp/basophil/results.md, results.json, results.png

One split is made and the class's training images are cut to ``keep`` (the dropped images go nowhere: validation and
test are untouched). Then, for every seed, the same classifier is trained on that split in three arms —
(a) nothing done for the rare class, (b) class-balanced oversampling (``balance=sampler``), (c) GAN images of the class
added to the training split (a GAN trained on the ``keep`` images only) — and scored on the same test set. Every step
is skipped when its output exists, so an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neunn.training.config import resolve_config
from neunn.data.scan import scan_dataset
from neunn.data.split import DatasetSplit, load_split, save_split, stratified_split
from neunn.errors import NeunnError
from neunn.experiments.folder import open_experiment
from neunn.evaluation.evaluate import evaluate_run
from neunn.evaluation.metric_results import MetricResults
from neunn.gan.config import resolve_gan_config
from neunn.gan.evaluate import evaluate_gan, summarise
from neunn.gan.folder import GanDir
from neunn.gan.sample import sample_images
from neunn.gan.train import train_gan
from neunn.log import say
from neunn.rundir import RunDir
from neunn.training.setup import open_training_run
from neunn.training.train import train

ARMS = {"a": "no augmentation of the class", "b": "oversampling (balance=sampler)", "c": "GAN images added",
        "d": "vacuoles painted into cells of another class (--paste-from; with --folds)"}
SINGLE_SPLIT_ARMS = ("a", "b", "c")
CLASS_METRICS = ("sensitivity", "precision", "f1")
OVERALL_METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "mcc")


@dataclass(frozen=True)
class ExperimentSettings:
    """A rare-class experiment on one cut split: the dataset and experiment folder, the class and how many of its
    training images to keep, the seeds and arms, the classifier and GAN configs (presets and overrides), the GAN images
    added in arm c (default: up to the median class size), one GAN for all seeds or one per seed, and a split to start
    from instead of a new one."""

    data_dir: str | Path
    out: str | Path
    class_name: str
    keep: int
    seeds: Sequence[int] = (0, 1, 2)
    arms: Sequence[str] = ("a", "b", "c")
    preset: str | None = None
    overrides: Sequence[str] = ()
    gan_preset: str | None = None
    gan_overrides: Sequence[str] = ()
    n_synthetic: int | None = None
    one_gan: bool = False
    split_file: str | Path | None = None
    evaluate_gans: bool = True  # score each seed's GAN samples with its arm-a classifier
    progress: bool = True

    @property
    def data_root(self) -> str:
        """The dataset folder as an absolute path."""
        return str(Path(self.data_dir).resolve())

    def saved(self) -> dict[str, Any]:
        """What defines the experiment: OUT/experiment.json, checked when the experiment is continued."""
        return {"data_dir": self.data_root, "class_name": self.class_name, "keep": self.keep, "seeds": list(self.seeds),
                "arms": list(self.arms), "preset": self.preset, "overrides": list(self.overrides),
                "gan_preset": self.gan_preset, "gan_overrides": list(self.gan_overrides),
                "n_synthetic": self.n_synthetic, "one_gan": self.one_gan,
                "split_file": str(Path(self.split_file).resolve()) if self.split_file else None}


def cut_split(split: DatasetSplit, class_name: str, keep: int, *, seed: int = 0) -> DatasetSplit:
    """The same split with only ``keep`` training images of ``class_name`` (chosen with ``seed``); val/test unchanged."""
    pool = sorted((e for e in split.splits["train"] if e.label == class_name), key=lambda e: e.path)
    if keep < 1 or keep > len(pool):
        raise NeunnError(f"--keep must be between 1 and the {len(pool)} training images of {class_name}, got {keep}.")
    kept = set(random.Random(f"{seed}:{class_name}:keep").sample(pool, keep))
    train_entries = [e for e in split.splits["train"] if e.label != class_name or e in kept]
    return DatasetSplit(classes=list(split.classes), seed=split.seed, fractions=split.fractions,
                        splits={**split.splits, "train": train_entries})


def default_synthetic_count(split: DatasetSplit, class_name: str) -> int:
    """Enough synthetic images to lift the class to the median training count of the other classes (at least as many
    as it has real ones)."""
    counts = split.counts()["train"]
    others = [n for c, n in counts.items() if c != class_name]
    return max(counts[class_name], int(statistics.median(others)) - counts[class_name]) if others else counts[class_name]


def _train_and_score(settings: ExperimentSettings, run_dir: Path, overrides: list[str],
                     split_file: Path) -> dict[str, Any]:
    """Train (or continue) one classifier run and return its test metrics; reuses finished work."""
    run, data_dir = RunDir(run_dir), Path(settings.data_dir)
    metrics_file = run.evaluation("test").metrics
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())
    resume = run.config.is_file()
    cfg = None if resume else resolve_config(preset=settings.preset, overrides=[*settings.overrides, *overrides])
    train(open_training_run(data_dir, run.root, cfg, resume=resume, split_file=None if resume else split_file,
                            progress=settings.progress))
    return evaluate_run(run.root, data_dir=data_dir, split="test")


def gan_samples(data_dir: str | Path, class_name: str, gan_dir: Path, samples: Path, *, gan_preset: str | None,
                gan_overrides: list[str], seed: int, n: int, split_file: Path, progress: bool) -> Path:
    """Train (or continue) a GAN in ``gan_dir`` on the training images of ``class_name`` in ``split_file``, then sample
    ``n`` images into ``samples`` once; returns ``samples``. Every finished step is reused."""
    if not (samples / "manifest.json").is_file():
        resume = GanDir(gan_dir).has_run()
        cfg = None if resume else resolve_gan_config(preset=gan_preset, overrides=[*gan_overrides, f"seed={seed}"])
        train_gan(data_dir, gan_dir, class_names=[class_name], cfg=cfg, split_file=None if resume else split_file,
                  resume=resume, progress=progress)
        sample_images(gan_dir, n=n, out=samples, seed=0, progress=progress)
    return samples


def _synthetic_for_seed(settings: ExperimentSettings, seed: int, n: int, split_file: Path) -> tuple[Path, Path]:
    """Train (or continue) the GAN for ``seed`` on the kept images and sample ``n`` images; returns (gan, samples)."""
    out, gan_seed = Path(settings.out), 0 if settings.one_gan else seed
    gan_dir = out / "gan" / f"seed{gan_seed}"
    samples = gan_samples(settings.data_root, settings.class_name, gan_dir, out / "synthetic" / f"seed{gan_seed}",
                          gan_preset=settings.gan_preset, gan_overrides=list(settings.gan_overrides), seed=gan_seed,
                          n=n, split_file=split_file, progress=settings.progress)
    return gan_dir, samples


def arm_overrides(arm: str, synthetic: Path | None, class_name: str) -> list[str]:
    """The config overrides of an arm: its class balance and, for the synthetic arms, the folder of images added."""
    if arm in ("c", "d"):
        return ["balance=none", "synthetic=" + json.dumps([f"{synthetic}:{class_name}"])]
    return ["balance=none" if arm == "a" else "balance=sampler"]


def row_from_metrics(metrics: dict[str, Any], class_name: str) -> dict[str, float]:
    """The experiment's numbers from one evaluation: the class's recall, precision, F1 and the overall metrics."""
    results = MetricResults.from_json(metrics)
    per_class, overall = results.per_class[class_name], results.overall
    return {**{f"class_{k}": per_class.value(k) for k in CLASS_METRICS}, "accuracy": overall.accuracy,
            "macro_f1": overall.macro.f1, "balanced_accuracy": overall.balanced_accuracy, "mcc": overall.mcc}


def run_rare_class_experiment(settings: ExperimentSettings) -> dict[str, Any]:
    """Run the arms over the seeds on one cut split; writes OUT/results.{json,md,png} and returns the results."""
    from neunn.experiments.rare_class_report import summarise_experiment, write_experiment_report

    arms, seeds, class_name, keep = list(settings.arms), list(settings.seeds), settings.class_name, settings.keep
    bad_arms = [a for a in arms if a not in SINGLE_SPLIT_ARMS]
    if bad_arms or not arms:
        raise NeunnError(f"Arm '{bad_arms[0] if bad_arms else ''}' does not run on one cut split; choose among "
                         "a, b, c (arm d runs with --folds).")
    if not seeds or len(set(seeds)) != len(seeds):
        raise NeunnError("Give one or more distinct seeds (three or more for a mean ± sd).")
    out, data, split_file = Path(settings.out), Path(settings.data_dir), settings.split_file
    base_cfg = resolve_config(preset=settings.preset, overrides=list(settings.overrides))  # validated before any run
    if "c" in arms:
        gan_cfg = resolve_gan_config(preset=settings.gan_preset, overrides=list(settings.gan_overrides))
        if keep < gan_cfg.min_images:
            raise NeunnError(f"--keep {keep} is below the {gan_cfg.min_images} images a GAN needs (arm c); "
                             "keep more or lower min_images.")
    scan = scan_dataset(data, progress=settings.progress)
    if class_name not in scan.classes:
        raise NeunnError(f"Class '{class_name}' is not in dataset {data}; its classes are {', '.join(scan.classes)}.")
    base = load_split(Path(split_file)) if split_file else stratified_split(scan.images, fractions=base_cfg.split,
                                                                              seed=base_cfg.seed)
    split = cut_split(base, class_name, keep)
    n = settings.n_synthetic or default_synthetic_count(split, class_name)
    open_experiment(out, settings.saved(), what="experiment")
    split_path = out / "splits.json"
    if not split_path.is_file():
        save_split(split, split_path)
        save_split(base, out / "splits_full.json")  # before the cut: for a judge classifier that saw all the class
    say(f"rare-class experiment: {class_name} cut to {keep} training images; test set "
        f"{split.counts()['test'][class_name]} of {class_name}; arms {', '.join(arms)}; seeds {seeds}")

    rows, gan_quality = [], {}
    for seed in seeds:
        synthetic = None
        if "c" in arms:
            gan_dir, synthetic = _synthetic_for_seed(settings, seed, n, split_path)
        for arm in arms:
            say(f"[seed {seed}] arm ({arm}): {ARMS[arm]}")
            run_dir = out / "runs" / f"{arm}-seed{seed}"
            arm_config = [f"seed={seed}", *arm_overrides(arm, synthetic, class_name)]
            metrics = _train_and_score(settings, run_dir, arm_config, split_path)
            rows.append({"arm": arm, "seed": seed, "run": str(run_dir), **row_from_metrics(metrics, class_name)})
        if "c" in arms and settings.evaluate_gans and "a" in arms:
            quality_dir = out / "gan_quality" / f"seed{seed}"
            report = evaluate_gan(gan_dir, classifier_run=out / "runs" / f"a-seed{seed}", n_samples=n, out=quality_dir)
            gan_quality[seed] = summarise(report)["classes"][class_name]
    results = summarise_experiment(rows, settings=settings.saved(), class_name=class_name, keep=keep,
                                   n_synthetic=n if "c" in arms else 0, split=split, gan_quality=gan_quality)
    write_experiment_report(out, results)
    return results
