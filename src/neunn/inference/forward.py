"""Run a classifier over uint8 image batches: the one forward pass shared by validation, evaluation and prediction.

    logits = batched_logits(model, pixels, mean=meta["mean"], std=meta["std"])
    logits, features = batched_outputs(model, pixels, mean=meta["mean"], std=meta["std"])   # + penultimate features

Features are timm's pre-logits (``forward_head(..., pre_logits=True)``): what the classifier head sees, and what the
out-of-domain score measures distances in (:mod:`neunn.inference.out_of_domain`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import nn

from neunn.data.preprocess import normalize_batch


def logits_and_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A timm classifier's logits and penultimate features for a normalised batch (the same logits as ``model(x)``
    in eval mode: dropout before the head is the only step between them)."""
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    return model.get_classifier()(features), features


class WithFeatures(nn.Module):
    """A classifier whose forward gives (logits, features): the graph an ONNX export with a features output needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits_and_features(self.model, x)


@torch.inference_mode()
def batched_outputs(
    model: nn.Module,
    pixels: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    device: torch.device | None = None,
    autocast: torch.dtype | None = None,
    channels_last: bool = False,
    features: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits and (with ``features``) penultimate features, float32 on the CPU, for an N×3×H×W uint8 tensor,
    computed in batches in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, feats = [], []
    amp = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    for start in range(0, len(pixels), batch_size):
        x = normalize_batch(pixels[start : start + batch_size].to(device, non_blocking=True), mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            if features:
                out, feat = logits_and_features(model, x)
                feats.append(feat.float().cpu())
            else:
                out = model(x)
            logits.append(out.float().cpu())
    model.train(was_training)
    n_classes = getattr(model, "num_classes", 0)
    empty_features = torch.empty((0, getattr(model, "num_features", 0)))
    return (torch.cat(logits) if logits else torch.empty((0, n_classes)),
            (torch.cat(feats) if feats else empty_features) if features else None)


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
    return batched_outputs(model, pixels, mean=mean, std=std, batch_size=batch_size, device=device, autocast=autocast,
                           channels_last=channels_last, features=False)[0]
