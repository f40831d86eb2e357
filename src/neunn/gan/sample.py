"""Sampling a trained GAN: images named by their seed, at the dataset's image size, in a folder marked synthetic.

    result = sample_images("gan/GBI", n=500, out="synthetic/GBI", seed=0)
    # synthetic/GBI/GBI/seed_000000.png ... seed_000499.png  +  synthetic/GBI/manifest.json {"synthetic": true, ...}

Image ``seed_S.png`` is a pure function of (generator checkpoint, class, S): its latent is drawn from a generator seeded
with S and every image is generated alone (PixelNorm, no batch statistics), so any one of them can be regenerated bit for
bit. The output folder is filled under a temporary name and renamed when complete, so it never holds half a sample.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from neunn import __version__
from neunn.checkpoint import read_checkpoint
from neunn.errors import NeunnError
from neunn.gan.folder import GanDir
from neunn.gan.networks import Generator, create_generator
from neunn.runtime import resolve_device

GENERATOR_NAME = "neunn.gan"
GENERATOR_KIND = "gan_generator"
MAX_SEED = 2**63 - 1


def sample_filename(seed: int) -> str:
    """The file name of the sample drawn with ``seed``."""
    return f"seed_{seed:06d}.png"


def latent_for_seed(seed: int, z_dim: int) -> torch.Tensor:
    """The latent vector (on the CPU) of the sample with this seed."""
    return torch.randn(z_dim, generator=torch.Generator().manual_seed(int(seed)))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] as uint8 pixels on the CPU."""
    return ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.inference_mode()
def generate_images(generator: Generator, seeds: Sequence[int], class_index: int,
                    device: torch.device | None = None) -> torch.Tensor:
    """N×3×R×R uint8 images, one per seed, each generated alone so it does not depend on its neighbours."""
    device = device or next(generator.parameters()).device
    label = torch.tensor([class_index], device=device)
    out = [to_uint8(generator(latent_for_seed(s, generator.z_dim)[None].to(device), label))[0] for s in seeds]
    return torch.stack(out) if out else torch.empty((0, 3, generator.resolution, generator.resolution), dtype=torch.uint8)


def to_image(pixels: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """One 3×R×R uint8 sample as an RGB image of ``size`` (width, height), upsampled with a Lanczos filter."""
    image = Image.fromarray(pixels.permute(1, 2, 0).numpy(), "RGB")
    return image if image.size == tuple(size) else image.resize(tuple(size), Image.Resampling.LANCZOS)


def image_grid(pixels: torch.Tensor, columns: int = 8) -> Image.Image:
    """Tile an N×3×H×W uint8 batch into one image, row by row."""
    n, _, h, w = pixels.shape
    rows = max(1, -(-n // columns))
    grid = Image.new("RGB", (min(n, columns) * w, rows * h), "white")
    for i in range(n):
        grid.paste(Image.fromarray(pixels[i].permute(1, 2, 0).numpy(), "RGB"), ((i % columns) * w, (i // columns) * h))
    return grid


def load_generator(gan_dir: str | Path, device: str = "cpu") -> tuple[Generator, dict[str, Any]]:
    """The EMA generator of a GAN folder, in eval mode, with its checkpoint metadata."""
    path = GanDir(Path(gan_dir)).require_generator()
    tensors, meta = read_checkpoint(path)
    if meta.get("kind") != GENERATOR_KIND:
        raise NeunnError(f"Checkpoint {path} is not a NeuNN GAN generator (kind {meta.get('kind')!r}).")
    try:
        generator = create_generator(resolution=meta["resolution"], z_dim=meta["z_dim"], n_classes=len(meta["classes"]),
                                     width=meta["width"], max_channels=meta["max_channels"])
        generator.load_state_dict(tensors, strict=True)
    except (KeyError, RuntimeError, TypeError):
        raise NeunnError(f"Checkpoint {path} does not hold the generator its metadata describes; it is damaged.") from None
    return generator.to(resolve_device(device)).eval().requires_grad_(False), meta


def pick_class(meta: dict[str, Any], class_name: str | None) -> str:
    """The class to sample: the one asked for, or the generator's only class."""
    classes = list(meta["classes"])
    if class_name is None:
        if len(classes) > 1:
            raise NeunnError(f"This GAN is conditional on {len(classes)} classes ({', '.join(classes)}); "
                             "choose one with --class.")
        return classes[0]
    if class_name not in classes:
        raise NeunnError(f"This GAN was not trained on class '{class_name}'; it knows {', '.join(classes)}.")
    return class_name


def _prepare_output(out: Path) -> Path:
    """Check that ``out`` can receive samples and return the temporary folder to fill instead."""
    if out.exists() and not out.is_dir():
        raise NeunnError(f"Output {out} is a file; choose a new or empty folder for the samples.")
    if out.is_dir() and any(out.iterdir()):
        raise NeunnError(f"Output folder {out} already holds files; choose a new or empty folder for the samples.")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent / f".{out.name}.partial-{os.getpid()}"


@dataclass
class SampleResult:
    """What ``sample_images`` wrote."""

    out: Path
    class_name: str
    seeds: list[int]


def sample_images(gan_dir: str | Path, *, n: int, out: str | Path, seed: int = 0, class_name: str | None = None,
                  device: str = "cpu", progress: bool = True) -> SampleResult:
    """Write ``n`` samples (seeds ``seed`` … ``seed+n-1``) of one class as OUT/<CLASS>/seed_S.png + OUT/manifest.json."""
    if n < 1:
        raise NeunnError(f"The number of samples must be at least 1, got {n}.")
    if seed < 0 or seed + n - 1 > MAX_SEED:
        raise NeunnError(f"Seeds must lie between 0 and {MAX_SEED}, got {seed} to {seed + n - 1}.")
    out = Path(out)
    generator, meta = load_generator(gan_dir, device)
    name = pick_class(meta, class_name)
    tmp = _prepare_output(out)
    seeds = list(range(seed, seed + n))
    size = tuple(meta["image_size"])
    try:
        (tmp / name).mkdir(parents=True)
        for s in tqdm(seeds, desc=f"sample {name}", unit="img", disable=not progress, leave=False):
            pixels = generate_images(generator, [s], meta["classes"].index(name))[0]
            to_image(pixels, size).save(tmp / name / sample_filename(s), format="PNG", compress_level=4)
        manifest = {"synthetic": True, "generator": GENERATOR_NAME, "gan_dir": str(Path(gan_dir).resolve()),
                    "class": name, "seeds": seeds, "image_size": list(size), "resolution": meta["resolution"],
                    "checkpoint": str(GanDir(Path(gan_dir)).generator.with_suffix(".safetensors").resolve()),
                    "step": meta["step"], "neunn_version": __version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if out.exists():
            out.rmdir()  # checked empty above
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return SampleResult(out=out, class_name=name, seeds=seeds)
