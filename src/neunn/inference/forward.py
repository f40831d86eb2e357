"""Run a classifier over uint8 image batches: the one forward pass shared by validation, evaluation and prediction."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import nn

from neunn.data.preprocess import normalize_batch


@torch.inference_mode()
def batched_logits(
    model: nn.Module,
    pixels: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    device: torch.device | None = None,
    autocast: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits (float32, on the CPU) for an N×3×H×W uint8 tensor, computed in batches in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    amp = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    for start in range(0, len(pixels), batch_size):
        x = normalize_batch(pixels[start : start + batch_size].to(device, non_blocking=True), mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            out.append(model(x).float().cpu())
    model.train(was_training)
    n_classes = getattr(model, "num_classes", 0)
    return torch.cat(out) if out else torch.empty((0, n_classes))
