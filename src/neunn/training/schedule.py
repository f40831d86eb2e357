"""Training schedules, pure functions of the step: the learning rate (linear warmup, then cosine decay to a floor) and
the EMA decay (warmed up, so an EMA model is not stuck near its random start in short runs)."""

from __future__ import annotations

import math


def lr_at(step: int, *, total_steps: int, warmup_steps: int, base_lr: float, min_lr_ratio: float) -> float:
    """Learning rate for optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    floor = base_lr * min_lr_ratio
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay for optimiser step ``step`` (0-based): (1 + step) / (10 + step), capped at ``decay``."""
    return min(decay, (1 + step) / (10 + step))
