"""The training loop: decoded images in memory, batch augmentation on the device, AdamW + warmup/cosine, EMA, and a
checkpoint after every epoch from which ``--resume`` continues to the same result as an uninterrupted run.

    result = train("data/neutrophils", "runs/b7", cfg=resolve_config(preset="neunn-b7"))

Randomness is drawn from generators seeded by (seed, epoch), so a resumed run replays exactly what the killed one would
have done; the best checkpoint is the one with the highest validation macro-F1.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from tqdm import tqdm

from neunn import __version__
from neunn.augment import augment_batch
from neunn.calibration import fit_temperature
from neunn.checkpoint import (optimizer_from_tensors, optimizer_to_tensors, prefixed, read_checkpoint,
                              save_checkpoint, unprefixed)
from neunn.config import TrainConfig, config_to_dict
from neunn.data.decoded import DecodedImages, decode_images
from neunn.data.preprocess import normalize_batch
from neunn.inference import batched_logits
from neunn.metrics import compute_metrics, expected_calibration_error
from neunn.model import classifier_from_checkpoint, create_classifier
from neunn.run_setup import TrainingRun, open_training_run, say
from neunn.runtime import autocast_dtype, resolve_device
from neunn.schedule import lr_at


@dataclass
class TrainResult:
    """What a finished run achieved on its validation split."""

    run_dir: Path
    best_epoch: int
    best_val_macro_f1: float | None
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
        "mean": list(cfg.mean),
        "std": list(cfg.std),
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
    metrics = compute_metrics(val.labels.numpy(), torch.softmax(logits, 1).numpy(), classes)
    return {"val_loss": loss, "val_accuracy": metrics["overall"]["accuracy"],
            "val_macro_f1": metrics["overall"]["macro"]["f1"]}


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


def train(
    data_dir: str | Path,
    out: str | Path,
    *,
    cfg: TrainConfig | None = None,
    resume: bool = False,
    split_file: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a classifier on a folder-per-class dataset into the run folder ``out`` (or resume the run there)."""
    setup = open_training_run(data_dir, out, cfg, resume=resume, split_file=split_file, progress=progress)
    cfg, run, classes = setup.cfg, setup.run, setup.split.classes
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    amp_dtype = autocast_dtype(cfg.precision, device)
    channels_last = cfg.channels_last and device.type == "cuda"

    def decode(name: str) -> DecodedImages:
        images = decode_images(setup.data_dir, setup.split.splits[name], classes, size=cfg.img_size,
                               workers=cfg.workers, progress=progress, desc=f"decode {name}")
        for path, reason in images.skipped:
            say(f"  skipped {path}: {reason}")
        return images

    train_set, val_set = decode("train"), decode("val")
    for source in setup.synthetic:
        extra = decode_images(source.root, source.images, classes, size=cfg.img_size, workers=cfg.workers,
                              progress=progress, desc="decode synthetic")
        train_set = train_set.concat(extra)
    synthetic_text = f" (incl. synthetic {setup.synthetic_counts()})" if setup.synthetic else ""
    say(f"train {len(train_set)} images{synthetic_text}, val {len(val_set)}, device {device}, "
        f"model {cfg.model} at {cfg.img_size}px")

    torch.manual_seed(cfg.seed)
    model = create_classifier(cfg.model, len(classes), pretrained=cfg.pretrained, drop_rate=cfg.drop_rate,
                              drop_path_rate=cfg.drop_path_rate).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on norms and biases
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    class_weights = _class_weights(train_set.labels, len(classes)).to(device) if cfg.balance == "loss" else None

    batch = min(cfg.batch_size, len(train_set))
    steps_per_epoch = max(1, len(train_set) // batch)  # drop the ragged last batch: BatchNorm dislikes tiny ones
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)

    start_epoch, best_f1, best_loss, best_epoch = 1, -1.0, math.inf, 0
    last = run.checkpoint("last")
    if resume and last.with_suffix(".safetensors").is_file():
        tensors, meta = read_checkpoint(last)
        model.load_state_dict(unprefixed("model", tensors))
        if ema is not None:
            ema.module.load_state_dict(unprefixed("ema", tensors))
        optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["optimizer"]))
        if meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        start_epoch = meta["epoch"] + 1
        best_f1, best_loss, best_epoch = meta["best_val_macro_f1"], meta["best_val_loss"], meta["best_epoch"]
        run.rewrite_log([r for r in run.read_log() if r.get("epoch", 0) <= meta["epoch"]])
        say(f"resuming after epoch {meta['epoch']} of {cfg.epochs}")
    elif resume:
        run.rewrite_log([])
        say("no checkpoint was written before the run stopped; starting from epoch 1")

    started = time.time()
    bar = tqdm(total=total_steps, initial=(start_epoch - 1) * steps_per_epoch, disable=not progress, unit="step",
               dynamic_ncols=True)
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout / stochastic depth draws
        aug_gen = _epoch_generator(cfg.seed, epoch, 1)
        order = _epoch_order(train_set.labels, cfg, epoch)
        t0, seen, loss_sum, correct = time.time(), 0, 0.0, 0
        bar.set_description(f"epoch {epoch}/{cfg.epochs}")
        for i in range(steps_per_epoch):
            step = (epoch - 1) * steps_per_epoch + i
            lr = lr_at(step, total_steps=total_steps, warmup_steps=warmup_steps, base_lr=cfg.lr,
                       min_lr_ratio=cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = order[i * batch : (i + 1) * batch]
            pixels = train_set.pixels[idx].to(device, non_blocking=True)
            labels = train_set.labels[idx].to(device, non_blocking=True)
            x = augment_batch(pixels, aug_gen, flip=cfg.aug_flip, rot90=cfg.aug_rot90, affine=cfg.aug_affine,
                              color=cfg.aug_color)
            x = normalize_batch(x, cfg.mean, cfg.std)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with amp:
                logits = model(x)
                loss = F.cross_entropy(logits.float(), labels, weight=class_weights,
                                       label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}, step {step}; "
                                         "lower lr or use precision=fp32.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(model, step=step)
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == labels).sum().item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", img_s=f"{seen / (time.time() - t0):.0f}", lr=f"{lr:.2e}")

        row: dict[str, Any] = {"epoch": epoch, "step": epoch * steps_per_epoch, "lr": lr,
                               "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                               "images_per_s": seen / (time.time() - t0)}
        eval_model = ema.module if ema is not None else model
        if len(val_set) and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            row.update(_validate(eval_model, val_set, cfg, device, amp_dtype, classes))
        row["epoch_seconds"] = time.time() - t0
        improved = "val_macro_f1" in row and (row["val_macro_f1"], -row["val_loss"]) > (best_f1, -best_loss)
        if improved or (not len(val_set) and epoch == cfg.epochs):
            best_f1, best_loss, best_epoch = row.get("val_macro_f1", -1.0), row.get("val_loss", math.inf), epoch
            save_checkpoint(run.checkpoint("best"), eval_model.state_dict(), _checkpoint_meta(
                setup, epoch=epoch, step=row["step"], kind="best",
                extra={"weights": "ema" if ema is not None else "model", "val": {k: v for k, v in row.items()
                                                                                 if k.startswith("val_")}}))
        row["best_epoch"] = best_epoch
        run.append_log(row)
        opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
        tensors = {**prefixed("model", model.state_dict()), **opt_tensors}
        if ema is not None:
            tensors.update(prefixed("ema", ema.module.state_dict()))
        save_checkpoint(last, tensors, _checkpoint_meta(setup, epoch=epoch, step=row["step"], kind="last", extra={
            "optimizer": opt_meta, "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "best_val_macro_f1": best_f1, "best_val_loss": best_loss if math.isfinite(best_loss) else 1e30,
            "best_epoch": best_epoch}))
        val_text = (f", val acc {row['val_accuracy']:.3f}, macro-F1 {row['val_macro_f1']:.3f}"
                    if "val_accuracy" in row else "")
        bar.write(f"epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.3f}{val_text}, "
                  f"{row['images_per_s']:.0f} img/s")
    bar.close()
    if len(val_set) and best_epoch:
        _calibrate_best(run, val_set, cfg, device, amp_dtype)
    return TrainResult(run.root, best_epoch, best_f1 if best_f1 >= 0 else None, cfg.epochs, time.time() - started)

