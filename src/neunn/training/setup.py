"""Training start-up, done once: resolve the config, join the torchrun process group, open the run folder (scan the
dataset, fix or reuse the split, save the resolved config) and pick the device. The loop then needs nothing else.

    setup = open_training_run("data/", "runs/b7", resolve_config(preset="neunn-b7"))   # a new run
    setup = open_training_run("data/", "runs/b7", resume=True)                          # its saved config and split
    setup = open_training_run("data/", "runs/ft", tuned, split_file="runs/b7/splits.json")  # runs/b7's test split
    result = train(setup)                                                               # neunn.training.train

A new run refuses a folder that already holds one; a resumed run reuses the saved config and split and refuses to go on
if the dataset, or a folder added to its training split (``synthetic``, ``added_data``), changed under it. Under
torchrun rank 0 opens the folder and the other ranks then read what it wrote. A fine-tuning run (``init_from`` and
``added_data`` in ``tuned``) keeps the source run's split so that both are scored on the same test cells.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from neunn import __version__
from neunn.atomic import write_text_atomic
from neunn.configfile import save_config
from neunn.data.scan import report_scan, scan_dataset
from neunn.data.split import DatasetSplit, load_split, open_split, save_split, verify_split
from neunn.distributed import Distributed, init_distributed
from neunn.errors import NeunnError
from neunn.log import say
from neunn.rundir import RunDir
from neunn.runtime import resolve_device
from neunn.training.config import TrainConfig, load_config, resolve_config
from neunn.training.extra_images import ADDED, SYNTHETIC, ExtraImages, check_unchanged, scan_extra_images


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
    extra: list[ExtraImages] = field(default_factory=list)  # synthetic and added folders, training split only


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
        split, extra = _write_run(run, Path(data_dir), cfg, resume=resume, split_file=split_file, progress=progress)
    ctx.barrier()
    if not ctx.is_main:  # the other ranks read what rank 0 decided and wrote
        split = load_split(run.splits)
        extra = _scan_extra(cfg, split, report=False)
    return TrainingRun(run=run, cfg=cfg, data_dir=Path(data_dir), split=split, ctx=ctx, device=device, resume=resume,
                       progress=progress and ctx.is_main, extra=extra)


def _scan_extra(cfg: TrainConfig, split: DatasetSplit, *, report: bool) -> list[ExtraImages]:
    """The config's synthetic and added folders, each checked against the split's classes and held-out images."""
    return ([scan_extra_images(spec, split, kind=SYNTHETIC, report=report) for spec in cfg.synthetic]
            + [scan_extra_images(spec, split, kind=ADDED, report=report) for spec in cfg.added_data])


def _write_run(run: RunDir, data_dir: Path, cfg: TrainConfig, *, resume: bool, split_file: str | Path | None,
               progress: bool) -> tuple[DatasetSplit, list[ExtraImages]]:
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

    extra = _scan_extra(cfg, split, report=True)
    for source in extra:
        say(f"{source.kind} images from {source.root}: {source.counts()} (training split only)")
    if resume:
        check_unchanged(extra, run.read_info())
    elif cfg.init_from:
        _warn_if_held_out_was_trained_on(split, Path(cfg.init_from))

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
            **{kind: [src.record() for src in extra if src.kind == kind] for kind in (SYNTHETIC, ADDED)},
        }
        write_text_atomic(run.info, json.dumps(info, indent=1))
    return split, extra


def _warn_if_held_out_was_trained_on(split: DatasetSplit, init_from: Path) -> None:
    """Say so when this run's validation or test images were training images (added ones too) of the run it starts
    from."""
    source = RunDir(init_from)
    if not source.splits.is_file():
        return
    trained_on = {e.sha256 for e in load_split(source.splits).splits.get("train", [])}
    trained_on.update(sha for src in source.read_info().get(ADDED, []) for _, sha in src["files"])
    seen = [e.path for part in ("val", "test") for e in split.splits[part] if e.sha256 in trained_on]
    if seen:
        say(f"warning: {len(seen)} validation/test image(s) of this run were training images of init_from "
            f"{init_from} (e.g. {seen[0]}), so its scores will be optimistic; pass --split-file "
            f"{source.splits} to keep that run's split.")
