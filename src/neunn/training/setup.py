"""Training start-up, done once: resolve the config, join the torchrun process group, open the run folder (scan the
dataset, fix or reuse the split, save the resolved config) and pick the device. The loop then needs nothing else.

    setup = open_training_run("data/", "runs/b7", resolve_config(preset="neunn-b7"))   # a new run
    setup = open_training_run("data/", "runs/b7", resume=True)                          # its saved config and split
    result = train(setup)                                                               # neunn.training.train

A new run refuses a folder that already holds one; a resumed run reuses the saved config and split and refuses to go on
if the dataset changed under it. Under torchrun rank 0 opens the folder and the other ranks then read what it wrote.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from neunn import __version__
from neunn.atomic import write_text_atomic
from neunn.configfile import save_config
from neunn.data.scan import ImageRecord, report_scan, scan_dataset
from neunn.data.split import DatasetSplit, load_split, open_split, save_split, verify_split
from neunn.distributed import Distributed, init_distributed
from neunn.errors import NeunnError
from neunn.log import say
from neunn.rundir import RunDir
from neunn.runtime import resolve_device
from neunn.training.config import TrainConfig, load_config, resolve_config


@dataclass
class SyntheticSource:
    """Synthetic images (e.g. GAN samples) of some classes, added to the training split only."""

    root: Path
    images: list[ImageRecord]

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.label for r in self.images))


@dataclass
class TrainingRun:
    """Everything a training loop needs: its folder, config, data, split, processes and device."""

    run: RunDir
    cfg: TrainConfig
    data_dir: Path
    split: DatasetSplit
    ctx: Distributed
    device: torch.device
    resume: bool = False
    progress: bool = True
    synthetic: list[SyntheticSource] = field(default_factory=list)

    def synthetic_counts(self) -> dict[str, int]:
        """Synthetic training images per class, over all sources."""
        total: Counter = Counter()
        for source in self.synthetic:
            total.update(source.counts())
        return dict(total)


def scan_synthetic(spec: str, classes: list[str], *, report: bool = True) -> SyntheticSource:
    """Read a ``DIR`` or ``DIR:CLASS`` synthetic source laid out as DIR/<CLASS>/images."""
    folder, _, only = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    scan = scan_dataset(folder)
    for bad in scan.bad_files if report else ():
        say(f"  skipped synthetic {bad.path}: {bad.reason}")
    wanted = [only] if only else scan.classes
    unknown = [c for c in wanted if c not in classes]
    if unknown:
        raise NeunnError(f"Synthetic source {spec} has classes the dataset does not: {', '.join(unknown)}.")
    images = [r for r in scan.images if r.label in wanted]
    if not images:
        raise NeunnError(f"Synthetic source {spec} holds no readable image of {', '.join(wanted)}.")
    return SyntheticSource(root=Path(folder), images=images)


def open_training_run(
    data_dir: str | Path, out: str | Path, cfg: TrainConfig | None = None, *, resume: bool = False,
    split_file: str | Path | None = None, progress: bool = True,
) -> TrainingRun:
    """Prepare (or reopen, with ``resume``) the run folder ``out`` for training on ``data_dir``.

    ``cfg`` is the resolved config of a new run (the default preset when None); a resumed run uses its saved one.
    """
    run = RunDir(Path(out))
    run.check_can_open(resume=resume)
    if resume:
        if cfg is not None:
            raise NeunnError("--resume continues with the run's saved config; do not pass a preset, config or "
                             "overrides.")
        cfg = load_config(run.config)
    cfg = cfg or resolve_config()
    device = resolve_device(cfg.device)
    ctx = init_distributed(device.type)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    if ctx.is_main:
        split, synthetic = _write_run(run, Path(data_dir), cfg, resume=resume, split_file=split_file,
                                      progress=progress)
    ctx.barrier()
    if not ctx.is_main:  # the other ranks read what rank 0 decided and wrote
        split = load_split(run.splits)
        synthetic = [scan_synthetic(spec, split.classes, report=False) for spec in cfg.synthetic]
    return TrainingRun(run=run, cfg=cfg, data_dir=Path(data_dir), split=split, ctx=ctx, device=device, resume=resume,
                       progress=progress and ctx.is_main, synthetic=synthetic)


def _write_run(run: RunDir, data_dir: Path, cfg: TrainConfig, *, resume: bool, split_file: str | Path | None,
               progress: bool) -> tuple[DatasetSplit, list[SyntheticSource]]:
    """Scan the dataset, fix (or check) the split and, for a new run, write the folder's config, split and facts."""
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
            "data_dir": str(data_dir.resolve()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
            "split_digest": split.digest(),
            "bad_files": [b.__dict__ for b in scan.bad_files],
            "synthetic": [{"source": str(src.root.resolve()), "counts": src.counts(),
                           "files": [[r.path, r.sha256] for r in src.images]} for src in synthetic],
        }
        write_text_atomic(run.info, json.dumps(info, indent=1))
    return split, synthetic
