"""The training loop: decoded images in memory, batch augmentation on the device, AdamW + warmup/cosine, EMA, and a
checkpoint after every epoch from which ``--resume`` continues to the same result as an uninterrupted run.

    result = train(open_training_run("data/neutrophils", "runs/b7", resolve_config(preset="neunn-b7")))

It reads as timm's train.py: build the data, model, optimiser and step schedule (:func:`_build`), then for every
epoch :func:`train_one_epoch`, :func:`neunn.training.validation.validate` and the
:class:`~neunn.training.checkpoint_saver.CheckpointSaver` (best by ``cfg.select_by``, and last), then the steps of
:data:`~neunn.training.after_training.AFTER_TRAINING`. Randomness is drawn from generators seeded by (seed, epoch), so
a resumed run replays exactly what the killed one would have done.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from tqdm import tqdm

from neunn.data.decoded import DecodedImages
from neunn.data.preprocess import normalize_batch
from neunn.distributed import Distributed, shutdown
from neunn.errors import NeunnError
from neunn.log import say
from neunn.model import classifier_for_config
from neunn.runtime import autocast_dtype, use_fast_gpu_kernels
from neunn.training.after_training import FinishedRun, run_after_training
from neunn.training.attribute_heads import WithAttributes, attribute_loss
from neunn.training.augment import augment_batch
from neunn.training.build import (Attributes, Steps, class_weights, create_optimizer, init_from_run,
                                  read_attribute_targets)
from neunn.training.checkpoint_saver import CheckpointSaver
from neunn.training.config import TrainConfig
from neunn.training.epoch import RunningSums, check_and_show, epoch_generator, epoch_order
from neunn.training.images import TrainingImages, say_skipped, training_images
from neunn.training.schedule import ema_decay_at
from neunn.training.setup import TrainingRun
from neunn.training.validation import validate

__all__ = ["TrainResult", "create_optimizer", "train", "train_one_epoch"]

SYNC_EVERY = 20  # training steps between host reads of the running sums: no per-step GPU sync
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
# torchrun stops every process when one of them ends; checkpoints are written atomically, so nothing half-written stays.
_PEER_STOPPED = ("Another training process stopped, so torchrun stopped this one; the run folder keeps every finished "
                 "epoch: run the same torchrun command with --resume.")


@dataclass
class TrainResult:
    """What a finished run achieved on its validation split."""

    run_dir: Path
    best_epoch: int
    select_by: str  # the validation figure that chose the best epoch (TrainConfig.select_by)
    best_val: dict[str, float]  # the validation figures of the best epoch; empty without a validation split
    epochs: int
    seconds: float


@dataclass
class Training:
    """What the epochs work with, built once by :func:`_build`."""

    setup: TrainingRun
    train_set: TrainingImages
    val_set: DecodedImages
    trainable: torch.nn.Module  # what the optimiser trains: the classifier, with its attribute heads when asked
    network: torch.nn.Module  # what the steps call: `trainable`, wrapped by DDP under torchrun and torch.compile
    ema: ModelEmaV3 | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    steps: Steps
    attributes: Attributes | None
    class_weights: torch.Tensor | None  # balance=loss
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def classifier(self) -> torch.nn.Module:
        """The classifier alone: what the checkpoints hold, gradients are clipped on and the EMA follows."""
        return self.trainable.model if self.attributes else self.trainable

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights validation scores and the best checkpoint keeps: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.classifier

    def autocast(self):
        """The mixed-precision context of a forward pass (none in fp32)."""
        return torch.autocast(self.setup.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()


@dataclass
class _Loop:
    """What the end of an epoch works with: the training, its checkpoints and the progress bar."""

    training: Training
    saver: CheckpointSaver
    bar: tqdm


def train(setup: TrainingRun) -> TrainResult:
    """Train the classifier that ``setup`` (from :func:`neunn.training.setup.open_training_run`) describes.

    Under torchrun every process calls this; rank 0 alone writes the run folder. The process group is closed at the end.
    """
    ctx = setup.ctx
    stop_on_sigterm = ctx.enabled and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _peer_stopped) if stop_on_sigterm else None
    try:
        return _train_loop(setup)
    except _OUT_OF_MEMORY:
        raise NeunnError(_out_of_memory_message(setup.cfg, ctx)) from None
    except RuntimeError as exc:  # a peer process died: its connection closed mid-collective
        if ctx.enabled and _lost_a_peer(exc):
            raise NeunnError(_PEER_STOPPED) from None
        raise
    finally:
        if stop_on_sigterm:
            signal.signal(signal.SIGTERM, previous)
        shutdown(ctx)


def _train_loop(setup: TrainingRun) -> TrainResult:
    """Build, resume when asked, train every epoch still to do, then finish the best checkpoint."""
    cfg, ctx, training = setup.cfg, setup.ctx, _build(setup)
    saver = CheckpointSaver(setup, training.classifier, training.ema, training.optimizer, training.scaler,
                            training.attributes)
    if setup.resume:
        saver.resume()
    training.network = _wrapped(setup, training.trainable)  # after resuming: every process starts from those weights
    started = time.time()
    bar = tqdm(total=training.steps.total, initial=(saver.start_epoch - 1) * training.steps.per_epoch,
               disable=not setup.progress, unit="step", dynamic_ncols=True)
    loop = _Loop(training, saver, bar)
    for epoch in range(saver.start_epoch, cfg.epochs + 1):
        epoch_started = time.time()
        row = train_one_epoch(training, epoch, bar)
        if ctx.is_main:
            _finish_epoch(loop, row, epoch_started)
        ctx.barrier()
    bar.close()
    if ctx.is_main and len(training.val_set) and saver.best_epoch:
        run_after_training(FinishedRun(setup.run, cfg, training.train_set, training.val_set, setup.device,
                                       training.amp_dtype))
    return TrainResult(setup.run.root, saver.best_epoch, cfg.select_by, saver.best_validation(), cfg.epochs,
                       time.time() - started)


def _build(setup: TrainingRun) -> Training:
    """Decode the data, then build on the training device the model (with attribute heads and ``init_from`` weights
    when asked), its EMA, the optimiser, the loss scaler and the step schedule."""
    cfg, ctx, device, classes = setup.cfg, setup.ctx, setup.device, setup.split.classes
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    amp_dtype = autocast_dtype(cfg.precision, device)
    channels_last = cfg.channels_last and device.type == "cuda"
    use_fast_gpu_kernels(device)
    train_set, val_set = training_images(setup, device, setup.progress)
    extra = "; ".join(f"{source.kind} {source.counts()}" for source in setup.extra)
    say(f"train {len(train_set)} images{f' (incl. {extra})' if extra else ''}, val {len(val_set)}, device {device}"
        f"{f' x {ctx.world_size} processes' if ctx.enabled else ''}, model {cfg.model} at {cfg.img_size}px")

    auxiliary = read_attribute_targets(cfg, train_set)
    torch.manual_seed(cfg.seed)
    classifier = classifier_for_config(cfg, len(classes))
    if cfg.init_from and not setup.resume:  # a resumed run restores its own weights
        init_from_run(classifier, cfg, classes)
    trainable = WithAttributes(classifier, auxiliary[0].spec()) if auxiliary else classifier
    if ctx.enabled and cfg.sync_bn:
        trainable = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trainable)
    trainable = trainable.to(device)
    if channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)
    attributes = Attributes(auxiliary[0], trainable.heads, auxiliary[1].to(device)) if auxiliary else None
    ema = ModelEmaV3(trainable.model if attributes else trainable, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    weights = class_weights(train_set.labels.cpu(), len(classes)).to(device) if cfg.balance == "loss" else None
    return Training(setup, train_set, val_set, trainable, trainable, ema, create_optimizer(trainable, cfg),
                    torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
                    Steps.for_run(cfg, ctx, len(train_set)), attributes, weights, amp_dtype, channels_last)


def _wrapped(setup: TrainingRun, trainable: torch.nn.Module) -> torch.nn.Module:
    """What the steps call: ``trainable`` in DistributedDataParallel under torchrun, compiled when cfg.compile asks;
    both share its parameters, so the checkpoints still come from the classifier."""
    network, device = trainable, setup.device
    if setup.ctx.enabled:
        network = torch.nn.parallel.DistributedDataParallel(trainable, device_ids=[device.index]
                                                            if device.type == "cuda" else None)
    return torch.compile(network) if setup.cfg.compile else network


def train_one_epoch(training: Training, epoch: int, bar: tqdm) -> dict[str, Any]:
    """Train one epoch on this process's share of the epoch's sample order; return its log row (over all processes)."""
    cfg, ctx, device, steps = training.setup.cfg, training.setup.ctx, training.setup.device, training.steps
    training.network.train()
    torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7919 * ctx.rank)  # dropout / stochastic depth draws
    aug_gen = epoch_generator(cfg.seed, epoch, 1 + 10 * ctx.rank)
    order = epoch_order(training.train_set.labels.cpu(), cfg, epoch)[ctx.rank :: ctx.world_size]
    batches = training.train_set.batches(order, per_batch=steps.per_rank_batch, steps=steps.per_epoch,
                                         pin_memory=device.type == "cuda", on_skip=say_skipped)
    started, sums, first = time.time(), RunningSums.zeros(device), (epoch - 1) * steps.per_epoch
    lr = steps.lr(first)
    bar.set_description(f"epoch {epoch}/{cfg.epochs}")
    for i, (pixels, labels, index) in enumerate(batches):
        if not len(labels):  # every file of a streamed batch became unreadable (each was named)
            continue
        lr = _train_step(training, first + i, pixels, labels, index, aug_gen, sums)
        bar.update(1)
        if (i + 1) % SYNC_EVERY == 0:
            check_and_show(sums.read(), bar, epoch=epoch, step=first + i, lr=lr, started=started, ctx=ctx)
    check_and_show(sums.read(), bar, epoch=epoch, step=first + steps.per_epoch - 1, lr=lr, started=started, ctx=ctx)
    total = sums.read(ctx)
    seen = max(total.images, 1)
    row: dict[str, Any] = {"epoch": epoch, "step": epoch * steps.per_epoch, "lr": lr, "train_loss": total.loss / seen,
                           "train_accuracy": total.correct / seen, "images_per_s": seen / (time.time() - started)}
    if training.attributes:  # train_loss is what was optimised: the class loss plus attribute_weight x this
        row["train_attribute_loss"] = total.attribute_loss / seen
    return row


def _train_step(training: Training, step: int, pixels: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                aug_gen: torch.Generator, sums: RunningSums) -> float:
    """One optimiser step on a batch (augmented on the device); adds to ``sums`` and returns the learning rate."""
    cfg, device, optimizer, scaler = training.setup.cfg, training.setup.device, training.optimizer, training.scaler
    lr = training.steps.lr(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    pixels, labels = pixels.to(device, non_blocking=True), labels.to(device, non_blocking=True)
    x = augment_batch(pixels, aug_gen, flip=cfg.aug_flip, rot90=cfg.aug_rot90, affine=cfg.aug_affine,
                      color=cfg.aug_color, stain=cfg.aug_stain)
    x = normalize_batch(x, cfg.mean, cfg.std)
    if training.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    attribute_part = None
    with training.autocast():
        out = training.network(x)
        logits = out[0] if training.attributes else out
        loss = F.cross_entropy(logits.float(), labels, weight=training.class_weights,
                               label_smoothing=cfg.label_smoothing)
        if training.attributes:
            attribute_part = attribute_loss(out[1], training.attributes.targets[index.to(device)])
            loss = loss + cfg.attribute_weight * attribute_part
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(training.classifier.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    if training.ema is not None:
        training.ema.apply_update_(training.classifier, ema_decay_at(step, cfg.ema_decay))
    sums.add(len(labels), loss.detach(), (logits.argmax(1) == labels).sum(), attribute_part)
    return lr


def _finish_epoch(loop: _Loop, row: dict[str, Any], t0: float) -> None:
    """Validate when due, keep the checkpoints and say how the epoch went (rank 0 only); ``t0``: when it started."""
    training, cfg, epoch = loop.training, loop.training.setup.cfg, row["epoch"]
    if len(training.val_set) and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
        row.update(validate(training.eval_model, training.val_set, cfg, device=training.setup.device,
                            amp_dtype=training.amp_dtype, classes=training.setup.split.classes))
    row["epoch_seconds"] = time.time() - t0
    loop.saver.save(row)
    val_text = (f", val acc {row['val_accuracy']:.3f}, macro-F1 {row['val_macro_f1']:.3f}" if "val_accuracy" in row
                else "")
    loop.bar.write(f"epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.3f}{val_text}, "
                   f"{row['images_per_s']:.0f} img/s", file=sys.stderr)


def _lost_a_peer(exc: RuntimeError) -> bool:
    return isinstance(exc, dist.DistBackendError) or any(
        word in str(exc) for word in ("Connection reset", "Connection closed", "NCCL communicator was aborted"))


def _peer_stopped(signum: int, frame: Any) -> None:
    raise NeunnError(_PEER_STOPPED)


def _out_of_memory_message(cfg: TrainConfig, ctx: Distributed) -> str:
    per_process = f" ({cfg.batch_size // ctx.world_size} per process)" if ctx.enabled else ""
    smaller = max(ctx.world_size, cfg.batch_size // 2 // ctx.world_size * ctx.world_size)
    return (f"Out of memory training {cfg.model} at batch_size {cfg.batch_size}{per_process} and img_size "
            f"{cfg.img_size}; train again into a new --out with batch_size={smaller} (and lr={cfg.lr / 2:g} to keep "
            f"the step per image), precision=bf16, or a smaller img_size (finished epochs stay in this run folder).")
