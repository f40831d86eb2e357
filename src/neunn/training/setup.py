"""Training start-up, done once: resolve the config, join the torchrun process group, open the run folder (scan the
dataset, fix or reuse the split, save the resolved config) and pick the device. The loop then needs nothing else.

    setup = open_training_run("data/", "runs/b7", resolve_config(preset="neunn-b7"))   # a new run
    setup = open_training_run("data/", "runs/b7", resume=True)                          # its saved config and split
    setup = open_training_run("data/", "runs/ft", tuned, split_file="runs/b7/splits.json")  # runs/b7's test split
    result = train(setup)                                                               # neunn.training.train
    with removed_unless_trained("runs/b7", resume=False):                               # no half-made folder left
        train(open_training_run(...))

A new run refuses a folder that already holds one, and its ``critical_classes`` must be classes of the dataset (the
default GBI and BAC apply where the dataset has them); a resumed run reuses the saved config and split and refuses to go
on if the dataset, or a folder added to its training split (``synthetic``, ``added_data``), changed under it. Under
torchrun rank 0 opens the folder and the other ranks then read what it wrote. A fine-tuning run (``init_from`` and
``added_data`` in ``tuned``) keeps the source run's split so that both are scored on the same test cells.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from neunn import __version__
from neunn.atomic import write_text_atomic
from neunn.configfile import save_config
from neunn.data.scan import dataset_classes, report_scan, scan_dataset
from neunn.data.split import DatasetSplit, load_split, open_split, save_split, verify_split
from neunn.distributed import Distributed, init_distributed, is_main_process
from neunn.errors import NeunnError
from neunn.log import say
from neunn.rundir import RunDir
from neunn.runtime import resolve_device
from neunn.inference.policy import DEFAULT_CRITICAL_CLASSES, parse_critical
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
    else:
        cfg = cfg or resolve_config()
        check_critical_classes(cfg, Path(data_dir))
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


def check_critical_classes(cfg: TrainConfig, data_dir: Path) -> None:
    """Refuse, before any image is read, critical classes set for this run that are not classes of the dataset.

    The default (the paper's GBI and BAC) is kept silently to the classes the dataset has, as the model's policy does.
    """
    names = parse_critical(cfg.critical_classes)
    if names == parse_critical(DEFAULT_CRITICAL_CLASSES):
        return
    classes = dataset_classes(data_dir)
    unknown = [name for name in names if name not in classes]
    if unknown:
        raise NeunnError(f"critical_classes names '{unknown[0]}', which is not a class of the dataset {data_dir}; "
                         f"its classes are {', '.join(classes) or 'none (no class folders)'}.")


@contextmanager
def removed_unless_trained(out: str | Path, *, resume: bool) -> Iterator[None]:
    """Around opening and training a new run in ``out``: when the block fails before the run's first checkpoint, take
    away what it wrote, so that the same command can be run again.

    Only what this block made goes: the folder when it did not exist, its files when it was empty. A resumed run, a
    folder that held anything before, a run with a checkpoint and an interrupted run (Ctrl-C; --resume continues it)
    are left as they are; under torchrun only rank 0 removes.
    """
    root = Path(out)
    made_here = not root.exists()
    was_empty = root.is_dir() and not any(root.iterdir())
    try:
        yield
    except Exception:
        if not resume and (made_here or was_empty) and root.is_dir() and not RunDir(root).checkpoints.exists() \
                and is_main_process():
            _remove_unstarted(root, keep_folder=not made_here)
        raise


def _remove_unstarted(root: Path, *, keep_folder: bool) -> None:
    """Remove a run folder that no epoch finished in (or, with ``keep_folder``, only what is in it)."""
    if not keep_folder:
        shutil.rmtree(root, ignore_errors=True)
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


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
