"""The training loop: decoded images in memory, batch augmentation on the device, AdamW + warmup/cosine, EMA, and a
checkpoint after every epoch from which ``--resume`` continues to the same result as an uninterrupted run.

    result = train(open_training_run("data/neutrophils", "runs/b7", resolve_config(preset="neunn-b7")))

Randomness is drawn from generators seeded by (seed, epoch), so a resumed run replays exactly what the killed one would
have done; the best checkpoint is the one with the highest validation macro-F1.
"""

from __future__ import annotations

import math
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

from neunn import __version__
from neunn.training.augment import augment_batch
from neunn.training.batchnorm_statistics import clean_batchnorm_statistics
from neunn.training.calibration import fit_temperature
from neunn.checkpoint import (optimizer_from_tensors, optimizer_to_tensors, prefixed, read_checkpoint,
                              read_checkpoint_meta, save_checkpoint, unprefixed)
from neunn.configfile import config_to_dict
from neunn.rundir import RunDir
from neunn.training.config import TrainConfig
from neunn.data.decoded import DecodedImages
from neunn.data.preprocess import normalize_batch
from neunn.distributed import Distributed, per_rank_batch, shutdown
from neunn.errors import NeunnError
from neunn.inference.forward import batched_logits
from neunn.evaluation.metrics import compute_metrics, expected_calibration_error
from neunn.evaluation.rare_class import average_precision
from neunn.model import classifier_for_config, classifier_from_checkpoint
from neunn.log import say
from neunn.training.setup import TrainingRun
from neunn.runtime import autocast_dtype, use_fast_gpu_kernels
from neunn.training.schedule import ema_decay_at, lr_at
from neunn.training.images import JPEG_DRAFT, TrainingImages, say_skipped, training_images
from neunn.training.out_of_domain import fit_out_of_domain
from neunn.training.attribute_heads import PREFIX as ATTRIBUTE_PREFIX
from neunn.training.attribute_heads import WithAttributes, attribute_loss
from neunn.data.attribute_table import AttributeTable, read_attribute_table


@dataclass
class TrainResult:
    """What a finished run achieved on its validation split."""

    run_dir: Path
    best_epoch: int
    select_by: str  # the validation figure that chose the best epoch (TrainConfig.select_by)
    best_val: dict[str, float]  # the validation figures of the best epoch; empty without a validation split
    epochs: int
    seconds: float


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


def _epoch_order(labels: torch.Tensor, cfg: TrainConfig, epoch: int) -> torch.Tensor:
    """Sample order for one epoch: a permutation, or class-balanced draws with replacement."""
    gen = _epoch_generator(cfg.seed, epoch, 0)
    if cfg.balance == "sampler":
        counts = torch.bincount(labels).float()
        weights = 1.0 / counts[labels]
        return torch.multinomial(weights, len(labels), replacement=True, generator=gen)
    return torch.randperm(len(labels), generator=gen)


def _class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    return counts.sum() / (n_classes * counts)


def _checkpoint_meta(setup: TrainingRun, *, epoch: int, step: int, kind: str, extra: dict[str, Any]) -> dict[str, Any]:
    cfg = setup.cfg
    return {
        "kind": kind,
        "arch": cfg.model,
        "classes": setup.split.classes,
        "img_size": cfg.img_size,
        "crop": cfg.crop,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "jpeg_draft": JPEG_DRAFT,
        "config": config_to_dict(cfg),
        "split_digest": setup.split.digest(),
        "neunn_version": __version__,
        "epoch": epoch,
        "step": step,
        **extra,
    }


def _validate(model, val: DecodedImages, cfg: TrainConfig, device, amp_dtype, classes) -> dict[str, float]:
    logits = batched_logits(model, val.pixels, mean=cfg.mean, std=cfg.std, batch_size=cfg.batch_size * 2,
                            device=device, autocast=amp_dtype, channels_last=cfg.channels_last and device.type == "cuda")
    loss = F.cross_entropy(logits, val.labels).item()
    labels, probs = val.labels.numpy(), torch.softmax(logits, 1).numpy()
    metrics = compute_metrics(labels, probs, classes)
    precisions = [average_precision(probs[:, k], labels == k) for k in range(len(classes))]
    defined = [p for p in precisions if p is not None]
    return {"val_loss": loss, "val_accuracy": metrics["overall"]["accuracy"],
            "val_macro_f1": metrics["overall"]["macro"]["f1"],
            "val_auc": metrics["overall"]["macro"]["roc_auc"],
            "val_ap": sum(defined) / len(defined) if defined else None}


def _selection_score(row: dict[str, Any], select_by: str) -> float:
    """The figure an epoch is chosen by (higher is better): cfg.select_by read from its validation row."""
    if select_by == "last":
        return float(row["epoch"])
    if select_by == "loss":
        return -row["val_loss"]
    value = row[{"macro_f1": "val_macro_f1", "auc": "val_auc", "ap": "val_ap"}[select_by]]
    return -1.0 if value is None else value  # undefined (a class absent from validation): never better than defined


def _calibrate_best(run, val_set: DecodedImages, cfg: TrainConfig, device, amp_dtype) -> None:
    """Fit temperature scaling on the validation split and store it in the best checkpoint's metadata."""
    tensors, meta = read_checkpoint(run.checkpoint("best"))
    model = classifier_from_checkpoint(tensors, meta).to(device)
    logits = batched_logits(model, val_set.pixels, mean=cfg.mean, std=cfg.std, batch_size=cfg.batch_size * 2,
                            device=device, autocast=amp_dtype)
    temperature = fit_temperature(logits, val_set.labels)
    labels = val_set.labels.numpy()
    meta["temperature"] = temperature
    meta["calibration"] = {
        "fitted_on": "val", "n": len(labels),
        "ece_before": expected_calibration_error(torch.softmax(logits, 1).numpy(), labels),
        "ece_after": expected_calibration_error(torch.softmax(logits / temperature, 1).numpy(), labels),
    }
    save_checkpoint(run.checkpoint("best"), tensors, meta)
    say(f"calibration: temperature {temperature:.3f}, validation ECE {meta['calibration']['ece_before']:.3f} -> "
        f"{meta['calibration']['ece_after']:.3f}")


@dataclass
class _Attributes:
    """The auxiliary attribute targets of a run (cfg.attributes): the table, the joint model, each training image's
    targets (N x A, -1 unknown, on the training device)."""

    table: AttributeTable
    joint: WithAttributes
    targets: torch.Tensor


def _attribute_targets(cfg: TrainConfig, train_set: TrainingImages) -> tuple[AttributeTable, torch.Tensor] | None:
    """Read cfg.attributes and match its rows to the training images by file name; say how many it describes."""
    if not cfg.attributes:
        return None
    table = read_attribute_table(cfg.attributes, cfg.attribute_columns)
    targets = table.targets(train_set.paths)
    described = int((targets >= 0).any(dim=1).sum())
    if not described:
        raise NeunnError(f"None of the {len(train_set)} training images has a row in the attribute table "
                         f"{cfg.attributes} (rows are matched by file name).")
    say(f"attributes: {len(table.columns)} auxiliary heads ({', '.join(table.columns)}), weight "
        f"{cfg.attribute_weight}; {described} of {len(train_set)} training images described")
    return table, targets


@dataclass
class _State:
    """Where the loop stands: the next epoch and the best validation result so far."""

    start_epoch: int = 1
    best_score: float = -math.inf  # _selection_score of the best epoch
    best_loss: float = math.inf  # its validation loss: the tie-break
    best_epoch: int = 0


def _restore(run, model, ema, optimizer, scaler, ctx: Distributed, attributes: _Attributes | None) -> _State:
    """Load the last checkpoint into the model, EMA, attribute heads and optimiser, and drop log lines written after
    it."""
    last = run.checkpoint("last")
    if not last.with_suffix(".safetensors").is_file():
        if ctx.is_main:
            run.trim_log("epoch", 0)
        say("no checkpoint was written before the run stopped; starting from epoch 1")
        return _State()
    tensors, meta = read_checkpoint(last)
    model.load_state_dict(unprefixed("model", tensors))
    if attributes is not None:
        if meta.get("attributes") != attributes.table.spec():
            raise NeunnError(f"The attribute table {attributes.table.source} has other columns or values than when "
                             "this run started; restore it, or start a new run.")
        attributes.joint.heads.load_state_dict(unprefixed(ATTRIBUTE_PREFIX, tensors))
    if ema is not None:
        ema.module.load_state_dict(unprefixed("ema", tensors))
    optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["optimizer"]))
    if meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    if ctx.is_main:
        run.trim_log("epoch", meta["epoch"])
    say(f"resuming after epoch {meta['epoch']}")
    # a checkpoint written before select_by existed holds the macro-F1 it was chosen by under its old name
    score = meta.get("best_val_score", meta.get("best_val_macro_f1", -math.inf))
    return _State(meta["epoch"] + 1, score, meta["best_val_loss"], meta["best_epoch"])


def _init_from_run(model: torch.nn.Module, cfg: TrainConfig, classes: list[str]) -> None:
    """Start from another run's best weights (fine-tuning): all of them when it has the same classes, else all but the
    classifier head, which stays freshly initialised for the new classes."""
    source = RunDir(Path(cfg.init_from))
    source.require_trained()
    tensors, meta = read_checkpoint(source.checkpoint("best"))
    if meta["arch"] != cfg.model:
        raise NeunnError(f"init_from {source.root} holds a {meta['arch']} model, not {cfg.model}; set model="
                         f"{meta['arch']}.")
    same_classes = list(meta["classes"]) == list(classes)
    head = {f"{name}.{key}" for name, module in model.named_modules() if module is model.get_classifier()
            for key in module.state_dict()}
    kept = {k: v for k, v in tensors.items() if same_classes or k not in head}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    if unexpected or set(missing) - head:
        raise NeunnError(f"The weights of {source.root} do not fit this model ({len(unexpected)} unexpected, "
                         f"{len(set(missing) - head)} missing tensors).")
    say(f"starting from the weights of {source.root} ({'all' if same_classes else 'all but the classifier head'}; "
        f"its classes: {', '.join(meta['classes'])})")


def create_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW without weight decay on norms and biases; on a GPU its fused kernel (one launch for every tensor)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    on_gpu = next(model.parameters()).is_cuda
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, fused=True if on_gpu else None)


SYNC_EVERY = 20  # training steps between host reads of the running loss: no per-step GPU sync
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


# torchrun stops every process when one of them ends; checkpoints are written atomically, so nothing half-written stays.
_PEER_STOPPED = ("Another training process stopped, so torchrun stopped this one; the run folder keeps every finished "
                 "epoch: run the same torchrun command with --resume.")


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
    cfg, run, classes, ctx, device, progress = (setup.cfg, setup.run, setup.split.classes, setup.ctx, setup.device,
                                                setup.progress)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    amp_dtype = autocast_dtype(cfg.precision, device)
    channels_last = cfg.channels_last and device.type == "cuda"
    use_fast_gpu_kernels(device)

    train_set, val_set = training_images(setup, device, progress)
    extra = "; ".join(f"{source.kind} {source.counts()}" for source in setup.extra)
    say(f"train {len(train_set)} images{f' (incl. {extra})' if extra else ''}, val {len(val_set)}, device {device}"
        f"{f' x {ctx.world_size} processes' if ctx.enabled else ''}, model {cfg.model} at {cfg.img_size}px")

    auxiliary = _attribute_targets(cfg, train_set)
    torch.manual_seed(cfg.seed)
    model = classifier_for_config(cfg, len(classes))
    if cfg.init_from and not setup.resume:  # a resumed run restores its own weights below
        _init_from_run(model, cfg, classes)
    # what the optimiser trains: the classifier, or the classifier with its attribute heads
    trained = WithAttributes(model, auxiliary[0].spec()) if auxiliary else model
    if ctx.enabled and cfg.sync_bn:
        trained = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trained)
    trained = trained.to(device)
    if channels_last:
        trained = trained.to(memory_format=torch.channels_last)
    attributes = _Attributes(auxiliary[0], trained, auxiliary[1].to(device)) if auxiliary else None
    model = trained.model if attributes else trained
    ema = ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    optimizer = create_optimizer(trained, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    class_weights = _class_weights(train_set.labels.cpu(), len(classes)).to(device) if cfg.balance == "loss" else None
    state = _restore(run, model, ema, optimizer, scaler, ctx, attributes) if setup.resume else _State()
    net = trained
    if ctx.enabled:
        net = torch.nn.parallel.DistributedDataParallel(trained, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    if cfg.compile:
        net = torch.compile(net)  # checkpoints still come from `model`, whose parameters the compiled module shares

    per_rank = per_rank_batch(min(cfg.batch_size, len(train_set)), ctx)
    steps_per_epoch = max(1, len(train_set) // ctx.world_size // per_rank)  # drop the ragged tail: BatchNorm dislikes tiny batches
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)

    started = time.time()
    bar = tqdm(total=total_steps, initial=(state.start_epoch - 1) * steps_per_epoch, disable=not progress,
               unit="step", dynamic_ncols=True)
    loop = _Loop(setup, model, ema, optimizer, scaler, state, val_set, amp_dtype, bar, attributes)
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    for epoch in range(state.start_epoch, cfg.epochs + 1):
        net.train()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7919 * ctx.rank)  # dropout / stochastic depth draws
        aug_gen = _epoch_generator(cfg.seed, epoch, 1 + 10 * ctx.rank)
        order = _epoch_order(train_set.labels.cpu(), cfg, epoch)[ctx.rank :: ctx.world_size]
        batches = train_set.batches(order, per_batch=per_rank, steps=steps_per_epoch, pin_memory=device.type == "cuda",
                                    on_skip=say_skipped)
        # images, loss sum, correct: kept on the device, read by the host only every SYNC_EVERY steps (a GPU sync)
        t0 = time.time()
        totals = torch.zeros(4, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
        bar.set_description(f"epoch {epoch}/{cfg.epochs}")

        def read_totals(step: int) -> None:
            """Sync with the device: stop on a non-finite loss, and show progress."""
            seen, loss_sum, correct, _ = totals.tolist()
            if not math.isfinite(loss_sum):
                raise NeunnError(f"The training loss became {loss_sum} by epoch {epoch}, step {step}; "
                                 "lower lr or use precision=fp32.")
            if seen:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.2e}",
                                img_s=f"{seen * ctx.world_size / (time.time() - t0):.0f}")

        for i, (pixels, labels, index) in enumerate(batches):
            if not len(labels):  # every file of a streamed batch became unreadable (each was named)
                continue
            step = (epoch - 1) * steps_per_epoch + i
            lr = lr_at(step, total_steps=total_steps, warmup_steps=warmup_steps, base_lr=cfg.lr,
                       min_lr_ratio=cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            pixels, labels = pixels.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            x = augment_batch(pixels, aug_gen, flip=cfg.aug_flip, rot90=cfg.aug_rot90, affine=cfg.aug_affine,
                              color=cfg.aug_color, stain=cfg.aug_stain)
            x = normalize_batch(x, cfg.mean, cfg.std)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with amp:
                out = net(x)
                logits = out[0] if attributes else out
                loss = F.cross_entropy(logits.float(), labels, weight=class_weights,
                                       label_smoothing=cfg.label_smoothing)
                if attributes:
                    extra_loss = attribute_loss(out[1], attributes.targets[index.to(device)])
                    totals[3] += extra_loss.detach() * len(labels)
                    loss = loss + cfg.attribute_weight * extra_loss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.apply_update_(model, ema_decay_at(step, cfg.ema_decay))
            totals[0] += len(labels)
            totals[1] += loss.detach() * len(labels)
            totals[2] += (logits.argmax(1) == labels).sum()
            bar.update(1)
            if (i + 1) % SYNC_EVERY == 0:
                read_totals(step)
        read_totals(epoch * steps_per_epoch - 1)
        if ctx.enabled:
            dist.all_reduce(totals)
        seen, loss_sum, correct, attribute_sum = totals.tolist()
        seen = max(seen, 1)
        row: dict[str, Any] = {"epoch": epoch, "step": epoch * steps_per_epoch, "lr": lr,
                               "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                               "images_per_s": seen / (time.time() - t0)}
        if attributes:  # train_loss is what was optimised: the class loss plus attribute_weight x this
            row["train_attribute_loss"] = attribute_sum / seen
        if ctx.is_main:
            _finish_epoch(loop, row, t0)
        ctx.barrier()
    bar.close()
    if ctx.is_main and len(val_set) and state.best_epoch:
        if cfg.bn_clean_cells > 0:  # before calibration and the out-of-domain fit: both see the final statistics
            clean_batchnorm_statistics(run, train_set, cfg, device)
        _calibrate_best(run, val_set, cfg, device, amp_dtype)
        fit_out_of_domain(run, train_set, val_set, device=device)  # after calibration: it binds to the final weights
    return TrainResult(run.root, state.best_epoch, cfg.select_by, _best_validation(run), cfg.epochs,
                       time.time() - started)


def _best_validation(run: RunDir) -> dict[str, float]:
    """The validation figures stored with the best checkpoint (none when the run had no validation split)."""
    if not run.checkpoint("best").with_suffix(".safetensors").is_file():
        return {}
    return read_checkpoint_meta(run.checkpoint("best")).get("val", {})


@dataclass
class _Loop:
    """What the end of an epoch works with: the run, the model and its training state, and the validation images."""

    setup: TrainingRun
    model: torch.nn.Module
    ema: ModelEmaV3 | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    state: _State
    val_set: DecodedImages
    amp_dtype: torch.dtype | None
    bar: tqdm
    attributes: _Attributes | None


def _finish_epoch(loop: _Loop, row: dict[str, Any], t0: float) -> None:
    """Validate, keep the best checkpoint, log the epoch and write the last checkpoint (rank 0 only)."""
    setup, model, ema, optimizer, scaler, state, val_set = (loop.setup, loop.model, loop.ema, loop.optimizer,
                                                            loop.scaler, loop.state, loop.val_set)
    cfg, run, epoch, device, amp_dtype = setup.cfg, setup.run, row["epoch"], setup.device, loop.amp_dtype
    eval_model = ema.module if ema is not None else model
    if len(val_set) and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
        row.update(_validate(eval_model, val_set, cfg, device, amp_dtype, setup.split.classes))
    row["epoch_seconds"] = time.time() - t0
    score = _selection_score(row, cfg.select_by) if "val_loss" in row else -math.inf
    improved = "val_loss" in row and (score, -row["val_loss"]) > (state.best_score, -state.best_loss)
    if improved or (not len(val_set) and epoch == cfg.epochs):
        state.best_score, state.best_loss = score, row.get("val_loss", math.inf)
        state.best_epoch = epoch
        val = {k: v for k, v in row.items() if k.startswith("val_")}
        save_checkpoint(run.checkpoint("best"), eval_model.state_dict(), _checkpoint_meta(
            setup, epoch=epoch, step=row["step"], kind="best",
            extra={"weights": "ema" if ema is not None else "model", "val": val}))
    row["best_epoch"] = state.best_epoch
    run.append_log(row)  # before the checkpoint: a resume drops log lines newer than the checkpoint
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors = {**prefixed("model", model.state_dict()), **opt_tensors}
    if loop.attributes is not None:
        tensors.update(prefixed(ATTRIBUTE_PREFIX, loop.attributes.joint.heads.state_dict()))
    if ema is not None:
        tensors.update(prefixed("ema", ema.module.state_dict()))
    save_checkpoint(run.checkpoint("last"), tensors, _checkpoint_meta(
        setup, epoch=epoch, step=row["step"], kind="last", extra={
            "optimizer": opt_meta, "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "best_val_score": state.best_score if math.isfinite(state.best_score) else -1e30,
            "best_val_loss": state.best_loss if math.isfinite(state.best_loss) else 1e30,
            "best_epoch": state.best_epoch,
            "attributes": loop.attributes.table.spec() if loop.attributes is not None else None}))
    val_text = f", val acc {row['val_accuracy']:.3f}, macro-F1 {row['val_macro_f1']:.3f}" if "val_accuracy" in row else ""
    loop.bar.write(f"epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.3f}{val_text}, {row['images_per_s']:.0f} img/s",
              file=sys.stderr)
