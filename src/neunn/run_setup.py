"""Opening a run folder for training: scan the dataset, fix or reuse the split, save the resolved config.

    setup = open_training_run(data_dir, out, cfg, resume=False, split_file=None)
    setup.run, setup.cfg, setup.scan, setup.split

A new run refuses a folder that already holds one; a resumed run reuses the saved config and split and refuses to go on
if the dataset changed under it.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from neunn import __version__
from neunn.atomic import write_text_atomic
from neunn.config import TrainConfig, load_config, save_config
from neunn.data.scan import DatasetScan, ImageRecord, scan_dataset
from neunn.data.split import DatasetSplit, open_split, save_split, verify_split
from neunn.distributed import is_main_process
from neunn.errors import NeunnError
from neunn.rundir import RunDir


@dataclass
class SyntheticSource:
    """Synthetic images (e.g. GAN samples) of some classes, added to the training split only."""

    root: Path
    images: list[ImageRecord]

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.label for r in self.images))


@dataclass
class TrainingRun:
    """Everything a training loop needs to know about its data and folder."""

    run: RunDir
    cfg: TrainConfig
    data_dir: Path
    scan: DatasetScan
    split: DatasetSplit
    synthetic: list[SyntheticSource] = field(default_factory=list)

    def synthetic_counts(self) -> dict[str, int]:
        """Synthetic training images per class, over all sources."""
        total: Counter = Counter()
        for source in self.synthetic:
            total.update(source.counts())
        return dict(total)


def scan_synthetic(spec: str, classes: list[str]) -> SyntheticSource:
    """Read a ``DIR`` or ``DIR:CLASS`` synthetic source laid out as DIR/<CLASS>/images."""
    folder, _, only = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    scan = scan_dataset(folder)
    for bad in scan.bad_files:
        say(f"  skipped synthetic {bad.path}: {bad.reason}")
    wanted = [only] if only else scan.classes
    unknown = [c for c in wanted if c not in classes]
    if unknown:
        raise NeunnError(f"Synthetic source {spec} has classes the dataset does not: {', '.join(unknown)}.")
    images = [r for r in scan.images if r.label in wanted]
    if not images:
        raise NeunnError(f"Synthetic source {spec} holds no readable image of {', '.join(wanted)}.")
    return SyntheticSource(root=Path(folder), images=images)


def say(message: str) -> None:
    """Progress messages go to stderr, so stdout stays clean for results; under torchrun only rank 0 speaks."""
    if is_main_process():
        print(message, file=sys.stderr, flush=True)


def report_scan(scan: DatasetScan) -> None:
    """Name every unusable file once, before a run starts."""
    counts = ", ".join(f"{c} {n}" for c, n in scan.counts().items())
    say(f"dataset {scan.root}: {len(scan.images)} images in {len(scan.classes)} classes ({counts})")
    for bad in scan.bad_files:
        say(f"  skipped {bad.path}: {bad.reason}")


def open_training_run(
    data_dir: str | Path, out: str | Path, cfg: TrainConfig | None, *, resume: bool, split_file: str | Path | None,
    progress: bool = True,
) -> TrainingRun:
    """Prepare (or reopen, with ``resume``) a run folder for training on ``data_dir``."""
    run = RunDir(Path(out))
    has_run = run.config.is_file() or run.checkpoints.is_dir()
    if resume:
        if not has_run:
            raise NeunnError(f"There is no run to resume in {run.root}; start one without --resume.")
        cfg = load_config(run.config)
    elif has_run:
        raise NeunnError(f"{run.root} already holds a run; continue it with --resume or choose another --out.")
    elif run.root.exists() and any(run.root.iterdir()):
        raise NeunnError(f"Output folder {run.root} is not empty; choose a new or empty folder for --out.")
    assert cfg is not None

    scan = scan_dataset(data_dir, progress=progress)
    report_scan(scan)
    scan.require_usable()

    split = open_split(scan.images, saved=run.splits, resume=resume, split_file=split_file, fractions=cfg.split,
                       seed=cfg.seed)
    missing_classes = [c for c in split.classes if c not in scan.classes]
    if missing_classes:
        raise NeunnError(f"The split names classes that the dataset does not have: {', '.join(missing_classes)}.")
    for warning in verify_split(split, scan):
        say(f"note: {warning}")

    synthetic = [scan_synthetic(spec, split.classes) for spec in cfg.synthetic]
    for source in synthetic:
        say(f"synthetic images from {source.root}: {source.counts()} (training split only)")

    run.root.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_split(split, run.splits)
        save_config(cfg, run.config)
        info = {
            "neunn_version": __version__,
            "data_dir": str(Path(data_dir).resolve()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
            "split_digest": split.digest(),
            "bad_files": [b.__dict__ for b in scan.bad_files],
            "synthetic": [{"source": str(src.root.resolve()), "counts": src.counts(),
                           "files": [[r.path, r.sha256] for r in src.images]} for src in synthetic],
        }
        write_text_atomic(run.info, json.dumps(info, indent=1))
    return TrainingRun(run=run, cfg=cfg, data_dir=Path(data_dir), scan=scan, split=split, synthetic=synthetic)
