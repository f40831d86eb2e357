"""One epoch's random draws and running sums: the sample order and augmentation generator of (seed, epoch), and the
losses and counts summed on the device.

    order = epoch_order(labels, cfg, epoch)             # a permutation, or class-balanced draws (balance=sampler)
    sums = RunningSums.zeros(device); sums.add(n, loss, correct, None); sums.read(ctx).loss
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
from tqdm import tqdm

from neunn.distributed import Distributed
from neunn.errors import NeunnError
from neunn.training.config import TrainConfig


class Sums(NamedTuple):
    """An epoch's running sums as numbers."""

    images: float
    loss: float
    correct: float
    attribute_loss: float


@dataclass
class RunningSums:
    """An epoch's running sums, kept on the device: images seen, the loss optimised and the attribute loss (each
    summed per image), and correct class predictions. Reading them is a GPU sync, so the loop does it now and then."""

    images: torch.Tensor
    loss: torch.Tensor
    correct: torch.Tensor
    attribute_loss: torch.Tensor

    @classmethod
    def zeros(cls, device: torch.device) -> RunningSums:
        dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        return cls(*(torch.zeros((), dtype=dtype, device=device) for _ in range(4)))

    def add(self, n: int, loss: torch.Tensor, correct: torch.Tensor, attribute_loss: torch.Tensor | None) -> None:
        """Add a batch of ``n`` images: its mean losses and its count of correct predictions."""
        self.images += n
        self.loss += loss * n
        self.correct += correct
        if attribute_loss is not None:
            self.attribute_loss += attribute_loss.detach() * n

    def read(self, ctx: Distributed | None = None) -> Sums:
        """The sums (one sync); with ``ctx`` under torchrun, summed over every process."""
        values = torch.stack([self.images, self.loss, self.correct, self.attribute_loss])
        if ctx is not None and ctx.enabled:
            dist.all_reduce(values)
        return Sums(*values.tolist())


def check_and_show(sums: Sums, bar: tqdm, *, epoch: int, step: int, lr: float, started: float,
                    ctx: Distributed) -> None:
    """Stop on a non-finite loss; show the running loss, the learning rate and the throughput."""
    if not math.isfinite(sums.loss):
        raise NeunnError(f"The training loss became {sums.loss} by epoch {epoch}, step {step}; "
                         "lower lr or use precision=fp32.")
    if sums.images:
        bar.set_postfix(loss=f"{sums.loss / sums.images:.3f}", lr=f"{lr:.2e}",
                        img_s=f"{sums.images * ctx.world_size / (time.time() - started):.0f}")


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator seeded by (seed, epoch, stream): stream 0 draws the sample order, 1 + 10 x rank the augmentation."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


def epoch_order(labels: torch.Tensor, cfg: TrainConfig, epoch: int) -> torch.Tensor:
    """Sample order for one epoch: a permutation, or class-balanced draws with replacement."""
    gen = epoch_generator(cfg.seed, epoch, 0)
    if cfg.balance == "sampler":
        weights = 1.0 / torch.bincount(labels).float()[labels]
        return torch.multinomial(weights, len(labels), replacement=True, generator=gen)
    return torch.randperm(len(labels), generator=gen)
