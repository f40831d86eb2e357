"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable augmentation applied to real and fake images alike.

    x = diff_augment(images, ["color", "translation", "cutout"], generator)   # images in [-1, 1], N×3×H×W

With a few hundred training images a discriminator memorises the real set within a few thousand steps and the generator
collapses; augmenting *both* real and generated images, differentiably so the generator's gradient passes through, keeps
the discriminator honest without the augmentations leaking into the samples. Random numbers come from a CPU generator,
so a seeded step draws the same augmentation on any device and after a resume.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125  # the paper's settings
CUTOUT_RATIO = 0.5


def _rand(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def augment_color(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random brightness (±0.5), saturation (×0–2) and contrast (×0.5–1.5), per image."""
    n = x.shape[0]
    x = x + (_rand((n, 1, 1, 1), generator, x) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand((n, 1, 1, 1), generator, x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((n, 1, 1, 1), generator, x) + 0.5) + mean


def augment_translation(x: torch.Tensor, generator: torch.Generator, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling the uncovered border with zeros."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1), generator=generator).to(x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1), generator=generator).to(x.device)
    padded = F.pad(x, [sx, sx, sy, sy])
    rows = torch.arange(h, device=x.device)[None, :] + sy - dy  # n×h indices into the padded image
    cols = torch.arange(w, device=x.device)[None, :] + sx - dx
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def augment_cutout(x: torch.Tensor, generator: torch.Generator, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero one random square of ``ratio`` times the image size per image (it may be clipped by the border)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_POLICIES = {"color": augment_color, "translation": augment_translation, "cutout": augment_cutout}


def diff_augment(x: torch.Tensor, policies: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Apply the named policies in order (``color``, ``translation``, ``cutout``); an empty list returns ``x``."""
    for name in policies:
        x = _POLICIES[name](x, generator)
    return x.contiguous()
