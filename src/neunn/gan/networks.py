"""A small DCGAN-style generator and discriminator for a few hundred cell images, built for one resolution.

    G = create_generator(resolution=128, z_dim=128, n_classes=1, width=32, max_channels=256)
    D = create_discriminator(resolution=128, n_classes=1, width=32, max_channels=256)
    fake = G(z, labels)            # N×3×R×R in [-1, 1]
    score = D(fake, labels)        # N real-vs-fake scores (hinge loss)

The generator upsamples a 4×4 map with one 3×3 convolution per doubling; PixelNorm (ProGAN) instead of BatchNorm keeps
every sample independent of its batch, so an image is a pure function of its seed. The discriminator uses spectral
normalisation on every layer (Miyato et al. 2018), a minibatch-std feature against mode collapse, and a class projection
(Miyato & Koyama 2018) for the class-conditional mode; with one class that term is a learned bias direction.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def channels_at(res: int, *, resolution: int, width: int, max_channels: int) -> int:
    """Channel count of the feature map at ``res`` pixels: ``width`` at full resolution, doubling per halving."""
    return min(max_channels, width * resolution // res)


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit RMS (per sample, so batch composition never matters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Generator(nn.Module):
    """Latent vector (+ class) → image in [-1, 1]."""

    def __init__(self, *, resolution: int, z_dim: int, n_classes: int, width: int, max_channels: int) -> None:
        super().__init__()
        self.resolution, self.z_dim, self.n_classes = resolution, z_dim, n_classes
        ch = partial(channels_at, resolution=resolution, width=width, max_channels=max_channels)
        self.embed = nn.Embedding(n_classes, z_dim)
        self.stem = nn.Linear(2 * z_dim, ch(4) * 16)
        blocks = []
        for level in range(3, int(math.log2(resolution)) + 1):
            res = 2**level
            blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                        nn.Conv2d(ch(res // 2), ch(res), 3, padding=1),
                                        nn.LeakyReLU(0.2), PixelNorm()))
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Conv2d(ch(resolution), 3, 3, padding=1)
        self.norm = PixelNorm()

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.norm(z[:, :, None, None])[:, :, 0, 0], self.embed(labels)], dim=1)
        h = self.stem(h).view(len(z), -1, 4, 4)
        h = self.norm(nn.functional.leaky_relu(h, 0.2))
        return torch.tanh(self.to_rgb(self.blocks(h)))


class MinibatchStd(nn.Module):
    """Append the mean over channels and pixels of the per-group standard deviation as one extra feature map."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = math.gcd(min(self.group, n), n)
        std = x.view(g, -1, c, h, w).var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
        return torch.cat([x, std.view(-1, 1, 1, 1).repeat(g, 1, h, w)], dim=1)


class Discriminator(nn.Module):
    """Image (+ class) → one real-vs-fake score per image."""

    def __init__(self, *, resolution: int, n_classes: int, width: int, max_channels: int, mbstd: bool = True,
                 spectral: bool = True) -> None:
        super().__init__()
        ch = partial(channels_at, resolution=resolution, width=width, max_channels=max_channels)
        sn = spectral_norm if spectral else (lambda module: module)
        layers: list[nn.Module] = [sn(nn.Conv2d(3, ch(resolution), 3, padding=1)), nn.LeakyReLU(0.2)]
        res = resolution
        while res > 4:
            layers += [sn(nn.Conv2d(ch(res), ch(res // 2), 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            res //= 2
        self.features = nn.Sequential(*layers)
        self.mbstd = MinibatchStd() if mbstd else nn.Identity()
        self.final = nn.Sequential(sn(nn.Conv2d(ch(4) + int(mbstd), ch(4), 3, padding=1)), nn.LeakyReLU(0.2))
        self.linear = sn(nn.Linear(ch(4), 1))
        self.embed = sn(nn.Embedding(n_classes, ch(4)))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.final(self.mbstd(self.features(x))).sum(dim=(2, 3))
        return self.linear(h).flatten() + (self.embed(labels) * h).sum(dim=1)


def create_generator(*, resolution: int, z_dim: int, n_classes: int, width: int, max_channels: int) -> Generator:
    """A generator for ``resolution``-pixel images of ``n_classes`` classes."""
    return Generator(resolution=resolution, z_dim=z_dim, n_classes=n_classes, width=width, max_channels=max_channels)


def create_discriminator(*, resolution: int, n_classes: int, width: int, max_channels: int, mbstd: bool = True,
                         spectral: bool = True) -> Discriminator:
    """A (by default spectrally normalised) discriminator for ``resolution``-pixel images of ``n_classes`` classes."""
    return Discriminator(resolution=resolution, n_classes=n_classes, width=width, max_channels=max_channels,
                         mbstd=mbstd, spectral=spectral)
