"""GAN training configuration: one typed dataclass, resolved from a preset (``neunn/presets/gan/*.yaml``) and overrides.

    cfg = resolve_gan_config(preset="gan-128", overrides=["steps=4000", "resolution=64"])
    save_config(cfg, gan_dir / "gan.yaml");  cfg = load_gan_config(gan_dir / "gan.yaml")    # neunn.configfile

Presets: ``gan-128`` (the default, made for a GPU), ``gan-256`` (GPU, larger images) and ``gan-cpu`` (64 px, small and
slow but usable on a laptop). Every key of :class:`GanConfig` can be set by an override.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neunn.configfile import dataclass_from_values, layered_values, read_config_values
from neunn.errors import NeunnError

DEFAULT_GAN_PRESET = "gan-128"
DIFFAUG_POLICIES = ("color", "translation", "cutout")


@dataclass
class GanConfig:
    """Everything that defines a GAN run; saved as GAN_DIR/gan.yaml."""

    # networks
    resolution: int = 128  # generator output size in pixels (a power of two, 32 to 256)
    z_dim: int = 128
    width: int = 32  # generator channels at full resolution, doubling at each halving up to max_channels
    d_width: int = 32  # the same for the discriminator, which needs the capacity more: with DiffAugment and spectral
    #                    norm on every layer, a thin discriminator stays near chance and the generator collapses
    max_channels: int = 256
    mbstd: bool = True  # minibatch standard deviation feature in the discriminator, against mode collapse
    d_spectral_norm: bool = True  # spectral normalisation on every discriminator layer
    # optimisation
    steps: int = 6000
    batch_size: int = 32
    lr_g: float = 1e-4  # two time-scale update rule: a faster discriminator keeps the generator's signal informative
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 0.0  # R1 penalty weight on real images; 0 disables it
    r1_every: int = 4  # lazy regularisation: apply R1 every N discriminator steps, scaled by N
    d_steps: int = 2  # discriminator updates per generator update
    ema_decay: float = 0.999  # generator EMA; samples come from the EMA generator
    # augmentation
    diffaug: str = "color,translation,cutout"  # DiffAugment policies applied to real and fake images alike
    real_dihedral: bool = True  # random flips / 90° rotations of real cells (a cell has no canonical orientation)
    # data
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)  # the same default as `neunn train`, so splits agree
    split_seed: int = 0
    min_images: int = 20  # fewer training images of a class than this is refused
    workers: int = 2
    # bookkeeping
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 leaves PyTorch's default
    notes: str = ""


GAN_PRESETS = "presets/gan"


def _validate(cfg: GanConfig) -> None:
    res = cfg.resolution
    if res < 32 or res > 512 or res & (res - 1):
        raise NeunnError(f"resolution must be a power of two from 32 to 512, got {res}.")
    for key in ("z_dim", "width", "d_width", "max_channels", "steps", "batch_size", "r1_every", "checkpoint_every", "d_steps",
                "sample_every", "log_every", "min_images"):
        if getattr(cfg, key) < 1:
            raise NeunnError(f"{key} must be at least 1, got {getattr(cfg, key)}.")
    if cfg.batch_size < 2:
        raise NeunnError(f"batch_size must be at least 2 for the discriminator's batch statistics, got {cfg.batch_size}.")
    unknown = [p for p in diffaug_policies(cfg) if p not in DIFFAUG_POLICIES]
    if unknown:
        raise NeunnError(f"Unknown DiffAugment policy '{unknown[0]}'; use a comma-separated subset of "
                         f"{', '.join(DIFFAUG_POLICIES)} (or an empty string).")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise NeunnError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}.")
    if abs(sum(cfg.split) - 1.0) > 1e-6 or min(cfg.split) < 0 or cfg.split[0] <= 0:
        raise NeunnError(f"split must be three non-negative fractions (train, val, test) summing to 1, got {cfg.split}.")
    if cfg.r1_gamma < 0:
        raise NeunnError(f"r1_gamma must not be negative, got {cfg.r1_gamma}.")


def diffaug_policies(cfg: GanConfig) -> list[str]:
    """The DiffAugment policies named by ``cfg.diffaug``, in order."""
    return [p.strip() for p in cfg.diffaug.split(",") if p.strip()]


def gan_config_from_dict(values: dict[str, Any]) -> GanConfig:
    """Build a validated GAN config from a mapping of keys to (possibly string) values."""
    cfg = dataclass_from_values(GanConfig, values, what="GAN config")
    _validate(cfg)
    return cfg


def resolve_gan_config(*, preset: str | None = None, overrides: list[str] | None = None) -> GanConfig:
    """Layer the defaults, a GAN preset and ``key=value`` overrides, in that order."""
    return gan_config_from_dict(layered_values(GAN_PRESETS, preset or DEFAULT_GAN_PRESET, overrides=overrides,
                                               what="GAN preset"))


def load_gan_config(path: Path) -> GanConfig:
    """Read a GAN config saved by :func:`neunn.configfile.save_config`."""
    return gan_config_from_dict(read_config_values(path, what="GAN config"))
