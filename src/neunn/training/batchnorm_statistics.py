"""BatchNorm statistics of clean cells: after training, re-estimate the best checkpoint's running means and variances
on the run's own training cells as inference sees them (no augmentation), before calibration and the out-of-domain fit.

    clean_batchnorm_statistics(run, train_set, cfg, device)      # when cfg.bn_clean_cells > 0

Training with strong colour and stain augmentation leaves BatchNorm layers with the statistics of augmented images,
while the cells the model meets are clean; what re-estimating them gains, and where it does not, is measured in
docs/results.md §2. Only the BatchNorm buffers change; every weight stays as trained. Dropout and stochastic depth stay
off while the statistics are gathered, so they are those of the network as it is used.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neunn.checkpoint import read_checkpoint, save_checkpoint
from neunn.inference.forward import normalize_batch
from neunn.log import say
from neunn.model import classifier_from_checkpoint
from neunn.rundir import RunDir
from neunn.training.config import TrainConfig

_BATCH = 64


def clean_batchnorm_statistics(run: RunDir, train_set: Any, cfg: TrainConfig, device: torch.device) -> int:
    """Re-estimate the best checkpoint's BatchNorm statistics on up to ``cfg.bn_clean_cells`` training cells (a
    seeded sample; ``train_set`` in memory or streamed); returns the number of cells used (0: no BatchNorm layer)."""
    tensors, meta = read_checkpoint(run.checkpoint("best"))
    model = classifier_from_checkpoint(tensors, meta).to(device)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers or not len(train_set):
        return 0
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over every batch below
        layer.train()  # the rest of the network stays in eval mode
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(train_set), generator=generator)[: cfg.bn_clean_cells]
    used = 0
    with torch.no_grad():
        for pixels, labels, _ in train_set.batches(order, per_batch=_BATCH, steps=math.ceil(len(order) / _BATCH)):
            if len(labels):
                model(normalize_batch(pixels.to(device), cfg.mean, cfg.std))
                used += len(labels)
    model.eval()
    meta["batchnorm_statistics"] = {"from": "clean training cells", "n": used}
    save_checkpoint(run.checkpoint("best"), model.state_dict(), meta)
    say(f"BatchNorm statistics re-estimated on {used} clean training cells")
    return used
