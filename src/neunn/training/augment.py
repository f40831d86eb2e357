"""Batch augmentation for cell images, run on whatever device holds the batch (GPU when training there).

    x = augment_batch(pixels_uint8, generator, flip=True, rot90=True, affine=0.1, color=0.1, stain=0.2)
    # N×3×H×W float in [0, 1]

A single cell has no canonical orientation, so the 8 flips/90° rotations are exact and free; a small affine adds
scale/rotation/shift variety; colour jitter (brightness, contrast, saturation, hue and per-channel stain gain) stands in
for differences between smears and scanners; stain jitter scales each image's optical density (overall and per channel), as
a stronger, weaker or differently balanced May-Grünwald-Giemsa stain would. Random numbers come from a CPU generator, so a seeded run draws the
same augmentation on any device and after a resume.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * (high - low) + low).to(device)


def _dihedral(x: torch.Tensor, generator: torch.Generator, flip: bool, rot90: bool) -> torch.Tensor:
    n = x.shape[0]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(mask, x.flip(-1), x)
    if rot90:
        ks = torch.randint(0, 4, (n,), generator=generator)
        out = x.clone()
        for k in (1, 2, 3):
            idx = (ks == k).nonzero().flatten().to(x.device)
            if idx.numel():
                out[idx] = torch.rot90(x[idx], k, dims=(-2, -1))
        x = out
    return x


def _affine(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    angle = _uniform(n, -math.pi * strength, math.pi * strength, generator, x.device)
    scale = _uniform(n, 1 - strength, 1 + strength, generator, x.device)
    shift = _uniform(2 * n, -strength / 2, strength / 2, generator, x.device).view(n, 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # Reflection keeps the smear background continuous instead of adding black corners the model could key on.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _color(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]

    def factor(spread: float) -> torch.Tensor:
        return _uniform(n, 1 - spread, 1 + spread, generator, x.device).view(n, 1, 1, 1)

    brightness, contrast, saturation = factor(strength), factor(strength), factor(strength)
    gain = _uniform(3 * n, 1 - strength / 2, 1 + strength / 2, generator, x.device).view(n, 3, 1, 1)
    hue = _uniform(n, -strength * math.pi / 3, strength * math.pi / 3, generator, x.device)

    x = x * gain * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * saturation + gray
    # Hue: rotate chroma in YIQ space by a per-image angle.
    rgb2yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device)
    yiq2rgb = torch.linalg.inv(rgb2yiq)
    cos, sin = torch.cos(hue), torch.sin(hue)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                       torch.stack([zero, sin, cos], 1)], 1)
    matrix = yiq2rgb @ rot @ rgb2yiq  # n×3×3
    x = torch.einsum("nij,njhw->nihw", matrix.to(x.dtype), x)
    return x.clamp_(0.0, 1.0)


def _stain(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    overall = _uniform(n, 1 - strength, 1 + strength, generator, x.device).view(n, 1, 1, 1)
    channel = _uniform(3 * n, 1 - strength / 3, 1 + strength / 3, generator, x.device).view(n, 3, 1, 1)
    # Optical density is -log(intensity); scaling it is a power law on intensity (the same model as perturb's "stain").
    od = -torch.log((x * 255.0 + 1.0) / 256.0)
    return (256.0 * torch.exp(-od * overall * channel) - 1.0).div_(255.0).clamp_(0.0, 1.0)


def augment_batch(
    pixels: torch.Tensor,
    generator: torch.Generator,
    *,
    flip: bool = True,
    rot90: bool = True,
    affine: float = 0.0,
    color: float = 0.0,
    stain: float = 0.0,
) -> torch.Tensor:
    """Randomly augment an N×3×H×W uint8 batch of square images; returns float32 in [0, 1] on the batch's device."""
    x = pixels.float() / 255.0
    x = _dihedral(x, generator, flip, rot90)
    if affine > 0:
        x = _affine(x, affine, generator)
    if stain > 0:
        x = _stain(x, stain, generator)
    if color > 0:
        x = _color(x, color, generator)
    return x
