"""GAN training on the training-split images of one class (or, class-conditional, of several), resumable step by step.

    result = train_gan("data/neutrophils", "gan/GBI", class_names=["GBI"], cfg=resolve_gan_config(preset="gan-128"))
    train_gan("data/neutrophils", "gan/GBI", class_names=["GBI"], resume=True)            # after an interruption
    train_gan("data/neutrophils", "gan/GBI", class_names=["GBI"], resume=True, steps=9000)  # train on, longer

Hinge loss, optional lazy R1, DiffAugment on real and fake, random flips/rotations of the real cells, Adam, and an EMA
generator that is what gets sampled. Only the classes' *training-split* images are decoded: the split is made exactly
like `neunn train`'s (or read from --split-file) and saved in GAN_DIR/splits.json, so a classifier trained with that
split file never tests on an image the GAN has seen. Randomness of step t is drawn from a generator seeded by
(seed, t), so a resumed run replays exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from neunn import __version__
from neunn.atomic import write_atomic, write_text_atomic
from neunn.training.augment import augment_batch
from neunn.checkpoint import (
    optimizer_from_tensors,
    optimizer_to_tensors,
    prefixed,
    read_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    unprefixed,
)
from neunn.data.decoded import DecodedImages, decode_images
from neunn.data.scan import DatasetScan, scan_dataset
from neunn.data.split import DatasetSplit, SplitEntry, open_split, save_split, verify_split
from neunn.errors import NeunnError
from neunn.configfile import config_to_dict, save_config
from neunn.gan.config import GanConfig, diffaug_policies, load_gan_config
from neunn.gan.diffaug import diff_augment
from neunn.gan.folder import GanDir
from neunn.gan.networks import Discriminator, Generator, create_discriminator, create_generator
from neunn.gan.sample import GENERATOR_KIND, generate_images, image_grid
from neunn.log import say
from neunn.runtime import resolve_device, use_fast_gpu_kernels
from neunn.training.schedule import ema_decay_at

GRID_SEEDS = 16  # samples per class in each periodic grid: seeds 0..15, the first images of `neunn gan sample`


@dataclass
class GanTrainResult:
    """What a finished (or resumed-to-the-end) GAN run did."""

    gan_dir: Path
    steps: int
    seconds: float
    images_per_class: dict[str, int]


@dataclass
class _Models:
    generator: Generator
    discriminator: Discriminator
    ema: Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU random generator for training step ``step`` (0-based)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def class_training_entries(split: DatasetSplit, class_names: Sequence[str]) -> list[SplitEntry]:
    """The training-split entries of the given classes: the only images a GAN may see."""
    return [e for e in split.splits["train"] if e.label in class_names]


def typical_image_size(scan: DatasetScan, entries: Sequence[SplitEntry]) -> tuple[int, int]:
    """The most common (width, height) among the entries' images: the size samples are written at."""
    sizes = {r.path: (r.width, r.height) for r in scan.images}
    return Counter(sizes[e.path] for e in entries).most_common(1)[0][0]


def _check_classes(scan: DatasetScan, class_names: Sequence[str]) -> None:
    if not class_names:
        raise NeunnError("Name at least one class to train the GAN on with --class.")
    unknown = [c for c in class_names if c not in scan.classes]
    if unknown:
        raise NeunnError(f"Class '{unknown[0]}' is not in dataset {scan.root}; its classes are {', '.join(scan.classes)}.")


def _check_counts(entries: Sequence[Any], class_names: Sequence[str], minimum: int, what: str) -> None:
    counts = Counter(e.label for e in entries)
    for name in class_names:
        if counts[name] < minimum:
            raise NeunnError(f"Class {name} has only {counts[name]} {what}; a GAN needs at least {minimum} "
                             "(about 100 or more for usable samples).")


def _open_split(gan: GanDir, scan: DatasetScan, cfg: GanConfig, *, resume: bool, split_file: Path | None) -> DatasetSplit:
    split = open_split(scan.images, saved=gan.splits, resume=resume, split_file=split_file, fractions=cfg.split,
                       seed=cfg.split_seed)
    for warning in verify_split(split, scan, names=("train",)):
        say(f"note: {warning}")
    return split


def _build_models(cfg: GanConfig, n_classes: int, device: torch.device) -> _Models:
    torch.manual_seed(cfg.seed)
    shape = {"resolution": cfg.resolution, "n_classes": n_classes, "max_channels": cfg.max_channels}
    generator = create_generator(z_dim=cfg.z_dim, width=cfg.width, **shape).to(device)
    discriminator = create_discriminator(width=cfg.d_width, mbstd=cfg.mbstd, spectral=cfg.d_spectral_norm,
                                         **shape).to(device)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    return _Models(generator, discriminator, ema, opt_g, opt_d)


def _load_state(models: _Models, gan: GanDir) -> int:
    tensors, meta = read_checkpoint(gan.last)
    models.generator.load_state_dict(unprefixed("G", tensors))
    models.discriminator.load_state_dict(unprefixed("D", tensors))
    models.ema.load_state_dict(unprefixed("G_ema", tensors))
    models.opt_g.load_state_dict(optimizer_from_tensors(unprefixed("opt_g", tensors), meta["opt_g"]))
    models.opt_d.load_state_dict(optimizer_from_tensors(unprefixed("opt_d", tensors), meta["opt_d"]))
    return int(meta["step"])


def _save_state(models: _Models, gan: GanDir, cfg: GanConfig, info: dict[str, Any], step: int) -> None:
    g_opt, g_meta = optimizer_to_tensors(models.opt_g)
    d_opt, d_meta = optimizer_to_tensors(models.opt_d)
    tensors = {**prefixed("G", models.generator.state_dict()), **prefixed("D", models.discriminator.state_dict()),
               **prefixed("G_ema", models.ema.state_dict()), **prefixed("opt_g", g_opt), **prefixed("opt_d", d_opt)}
    common = {"step": step, "config": config_to_dict(cfg), "classes": info["classes"],
              "split_digest": info["split_digest"], "neunn_version": __version__}
    # The generator goes first: a run killed between the two files then resumes from an older `last`, which is safe.
    save_checkpoint(gan.generator, models.ema.state_dict(), {
        "kind": GENERATOR_KIND, "resolution": cfg.resolution, "z_dim": cfg.z_dim, "width": cfg.width,
        "max_channels": cfg.max_channels, "image_size": info["image_size"], "data_dir": info["data_dir"],
        "images_per_class": info["images_per_class"], **common})
    save_checkpoint(gan.last, tensors, {"kind": "gan_last", "opt_g": g_meta, "opt_d": d_meta, **common})


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def _real_batch(real_pixels: DecodedImages, cfg: GanConfig, gen: torch.Generator,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(len(real_pixels), (cfg.batch_size,), generator=gen).to(device)
    real = augment_batch(real_pixels.pixels[idx], gen, flip=cfg.real_dihedral, rot90=cfg.real_dihedral)
    return real * 2 - 1, real_pixels.labels[idx]


def _discriminator_step(models: _Models, real_pixels: DecodedImages, cfg: GanConfig, gen: torch.Generator,
                        device: torch.device, with_r1: bool) -> dict[str, torch.Tensor]:
    G, D, policies = models.generator, models.discriminator, diffaug_policies(cfg)
    real, labels = _real_batch(real_pixels, cfg, gen, device)
    with torch.no_grad():
        fake = G(torch.randn(cfg.batch_size, cfg.z_dim, generator=gen).to(device), labels)
    real = real.detach().requires_grad_(with_r1)
    d_real = D(diff_augment(real, policies, gen), labels)
    d_fake = D(diff_augment(fake, policies, gen), labels)
    loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    r1 = torch.zeros((), device=device)
    if with_r1:
        # R1 on the real images before augmentation, as in StyleGAN2-ADA.
        (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        r1 = grad.pow(2).sum(dim=(1, 2, 3)).mean()
        loss = loss + cfg.r1_gamma / 2 * r1 * cfg.r1_every
    models.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    models.opt_d.step()
    return {"loss_d": loss.detach(), "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean(),
            "r1": r1.detach()}


def _train_step(models: _Models, real_pixels: DecodedImages, cfg: GanConfig, step: int,
                device: torch.device) -> dict[str, float]:
    """``d_steps`` discriminator updates and one generator update; returns the step's losses."""
    gen = step_generator(cfg.seed, step)
    G, D = models.generator, models.discriminator
    D.requires_grad_(True)
    for i in range(cfg.d_steps):
        d_stats = _discriminator_step(models, real_pixels, cfg, gen, device,
                                      with_r1=cfg.r1_gamma > 0 and i == 0 and step % cfg.r1_every == 0)

    D.requires_grad_(False)
    labels = real_pixels.labels[torch.randint(len(real_pixels), (cfg.batch_size,), generator=gen).to(device)]
    fake = G(torch.randn(cfg.batch_size, cfg.z_dim, generator=gen).to(device), labels)
    loss_g = -D(diff_augment(fake, diffaug_policies(cfg), gen), labels).mean()
    models.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    models.opt_g.step()
    _update_ema(models.ema, G, ema_decay_at(step, cfg.ema_decay))
    if not (torch.isfinite(d_stats["loss_d"]) and torch.isfinite(loss_g)):
        raise FloatingPointError(f"GAN losses became non-finite at step {step}; lower lr_g/lr_d or set r1_gamma.")
    return {"loss_g": loss_g.item(), **{k: v.item() for k, v in d_stats.items()}}


def _write_grid(models: _Models, gan: GanDir, n_classes: int, step: int, device: torch.device) -> None:
    rows = [generate_images(models.ema, range(GRID_SEEDS), c, device) for c in range(n_classes)]
    gan.samples.mkdir(parents=True, exist_ok=True)
    path = gan.samples / f"step_{step:06d}.png"
    grid = image_grid(torch.cat(rows))
    write_atomic(path, lambda tmp: grid.save(tmp, format="PNG"))


def _open_run(gan: GanDir, cfg: GanConfig | None, *, resume: bool, steps: int | None) -> GanConfig:
    gan.check_can_open(resume=resume)
    if resume:
        cfg = load_gan_config(gan.config)
        if steps is not None:
            done = read_checkpoint_meta(gan.last)["step"] if gan.last.with_suffix(".safetensors").is_file() else 0
            if steps < done:
                raise NeunnError(f"The GAN in {gan.root} has already trained {done} steps; ask for at least that many.")
            cfg.steps = steps
        return cfg
    if cfg is None:
        raise NeunnError("A new GAN run needs a config; pass a preset or overrides.")
    if steps is not None:
        cfg.steps = steps
    return cfg


def train_gan(
    data_dir: str | Path,
    out: str | Path,
    *,
    class_names: Sequence[str] | str | None = None,
    cfg: GanConfig | None = None,
    split_file: str | Path | None = None,
    resume: bool = False,
    steps: int | None = None,
    progress: bool = True,
) -> GanTrainResult:
    """Train (or resume) a GAN on the training-split images of ``class_names`` into the GAN folder ``out``."""
    gan = GanDir(Path(out))
    cfg = _open_run(gan, cfg, resume=resume, steps=steps)
    info = gan.read_info() if resume else {}
    names = [class_names] if isinstance(class_names, str) else list(class_names or info.get("classes", []))
    if resume and info.get("classes") and names != info["classes"]:
        raise NeunnError(f"The GAN in {gan.root} was trained on {', '.join(info['classes'])}, not {', '.join(names)}.")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)

    scan = scan_dataset(data_dir, progress=progress)
    _check_classes(scan, names)
    split = _open_split(gan, scan, cfg, resume=resume, split_file=split_file)
    entries = class_training_entries(split, names)
    _check_counts(entries, names, cfg.min_images, "training-split images")
    real = decode_images(Path(data_dir), entries, names, size=cfg.resolution, jpeg_draft=True, workers=cfg.workers,
                         progress=progress, desc="decode GAN training images")
    for path, reason in real.skipped:
        say(f"  skipped {path}: {reason}")
    readable = set(real.paths)
    used = [e for e in entries if e.path in readable]
    _check_counts(used, names, cfg.min_images, "readable training-split images")

    # Everything is checked: only now does the folder get written.
    if not resume:
        gan.root.mkdir(parents=True, exist_ok=True)
        save_split(split, gan.splits)
        info = {"neunn_version": __version__, "data_dir": str(Path(data_dir).resolve()), "classes": names,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
                "split_digest": split.digest(), "image_size": list(typical_image_size(scan, entries)),
                "images_per_class": dict(Counter(e.label for e in used)),
                "training_images": [[e.path, e.label, e.sha256] for e in used]}
        write_text_atomic(gan.info, json.dumps(info, indent=1))
        save_config(cfg, gan.config)  # last: its presence marks a GAN run that --resume can continue
    elif steps is not None:
        save_config(cfg, gan.config)
    return _run_loop(gan, cfg, info, real, progress)


def _run_loop(gan: GanDir, cfg: GanConfig, info: dict[str, Any], real: DecodedImages, progress: bool) -> GanTrainResult:
    device = resolve_device(cfg.device)
    use_fast_gpu_kernels(device)
    models = _build_models(cfg, len(info["classes"]), device)
    real = DecodedImages(real.pixels.to(device), real.labels.to(device), real.paths)  # a few hundred images: all on the device
    start = 0
    if gan.last.with_suffix(".safetensors").is_file():
        start = _load_state(models, gan)
        gan.trim_log("step", start)
        say(f"resuming the GAN after step {start} of {cfg.steps}")
    say(f"GAN on {', '.join(f'{c} ({n} images)' for c, n in info['images_per_class'].items())} at {cfg.resolution}px, "
        f"device {device}, {cfg.steps} steps")

    started, window, window_start = time.time(), [], time.time()
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, unit="step", dynamic_ncols=True, desc="GAN")
    for step in range(start, cfg.steps):
        window.append(_train_step(models, real, cfg, step, device))
        done = step + 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == cfg.steps:
            row = {"step": done, **{k: sum(r[k] for r in window) / len(window) for k in window[0]},
                   "images_per_s": len(window) * cfg.batch_size / max(time.time() - window_start, 1e-9)}
            gan.append_log(row)
            bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}",
                            img_s=f"{row['images_per_s']:.0f}")
            window, window_start = [], time.time()
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            _save_state(models, gan, cfg, info, done)
        if done % cfg.sample_every == 0 or done == cfg.steps:
            _write_grid(models, gan, len(info["classes"]), done, device)
    bar.close()
    return GanTrainResult(gan.root, cfg.steps, time.time() - started, dict(info["images_per_class"]))
