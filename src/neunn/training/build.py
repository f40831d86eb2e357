"""The parts a training run is built from, before its first step: the attribute targets, the weights it starts from
(``init_from``), the optimiser, the class weights of the loss and the step schedule.

    steps = Steps.for_run(cfg, ctx, len(train_set))            # batches per process, steps per epoch, warm-up
    optimizer = create_optimizer(trainable, cfg)              # AdamW; norms and biases without weight decay
    lr = steps.lr(step)                                        # warm-up, then cosine decay to cfg.min_lr_ratio
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from neunn.checkpoint import read_checkpoint
from neunn.data.attribute_table import AttributeTable, read_attribute_table
from neunn.distributed import Distributed, per_rank_batch
from neunn.errors import NeunnError
from neunn.log import say
from neunn.rundir import RunDir
from neunn.training.config import TrainConfig
from neunn.training.images import TrainingImages
from neunn.training.schedule import lr_at


@dataclass
class Attributes:
    """The auxiliary attribute targets of a run (cfg.attributes): the table, the heads trained for them, and each
    training image's targets (N x A, -1 unknown, on the training device)."""

    table: AttributeTable
    heads: torch.nn.Module
    targets: torch.Tensor


def read_attribute_targets(cfg: TrainConfig, train_set: TrainingImages) -> tuple[AttributeTable, torch.Tensor] | None:
    """Read cfg.attributes and match its rows to the training images by file name; say how many it describes."""
    if not cfg.attributes:
        return None
    table = read_attribute_table(cfg.attributes, cfg.attribute_columns)
    targets = table.targets(train_set.paths)
    described = int((targets >= 0).any(dim=1).sum())
    if not described:
        raise NeunnError(f"None of the {len(train_set)} training images has a row in the attribute table "
                         f"{cfg.attributes} (rows are matched by file name).")
    say(f"attributes: {len(table.columns)} auxiliary heads ({', '.join(table.columns)}), weight "
        f"{cfg.attribute_weight}; {described} of {len(train_set)} training images described")
    return table, targets


def init_from_run(classifier: torch.nn.Module, cfg: TrainConfig, classes: list[str]) -> None:
    """Start from another run's best weights (fine-tuning): all of them when it has the same classes, else all but the
    classifier head, which stays freshly initialised for the new classes."""
    source = RunDir(Path(cfg.init_from))
    source.require_trained()
    tensors, meta = read_checkpoint(source.checkpoint("best"))
    if meta["arch"] != cfg.model:
        raise NeunnError(f"init_from {source.root} holds a {meta['arch']} model, not {cfg.model}; set model="
                         f"{meta['arch']}.")
    same_classes = list(meta["classes"]) == list(classes)
    head = {f"{name}.{key}" for name, module in classifier.named_modules() if module is classifier.get_classifier()
            for key in module.state_dict()}
    kept = {k: v for k, v in tensors.items() if same_classes or k not in head}
    missing, unexpected = classifier.load_state_dict(kept, strict=False)
    if unexpected or set(missing) - head:
        raise NeunnError(f"The weights of {source.root} do not fit this model ({len(unexpected)} unexpected, "
                         f"{len(set(missing) - head)} missing tensors).")
    say(f"starting from the weights of {source.root} ({'all' if same_classes else 'all but the classifier head'}; "
        f"its classes: {', '.join(meta['classes'])})")


def create_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW without weight decay on norms and biases; on a GPU its fused kernel (one launch for every tensor)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    on_gpu = next(model.parameters()).is_cuda
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, fused=True if on_gpu else None)


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Loss weights inversely proportional to each class's count of training images (balance=loss)."""
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    return counts.sum() / (n_classes * counts)


@dataclass(frozen=True)
class Steps:
    """The step schedule of a run: images per batch on each process, optimiser steps per epoch and in all, warm-up
    steps, and the learning rate of every step."""

    per_rank_batch: int
    per_epoch: int
    total: int
    warmup: int
    base_lr: float
    min_lr_ratio: float

    @classmethod
    def for_run(cls, cfg: TrainConfig, ctx: Distributed, n_images: int) -> Steps:
        """The schedule for ``n_images`` training images shared by ``ctx``'s processes; the ragged tail of an epoch is
        dropped, since BatchNorm dislikes tiny batches."""
        per_rank = per_rank_batch(min(cfg.batch_size, n_images), ctx)
        per_epoch = max(1, n_images // ctx.world_size // per_rank)
        return cls(per_rank, per_epoch, per_epoch * cfg.epochs, round(cfg.warmup_epochs * per_epoch), cfg.lr,
                   cfg.min_lr_ratio)

    def lr(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based)."""
        return lr_at(step, total_steps=self.total, warmup_steps=self.warmup, base_lr=self.base_lr,
                     min_lr_ratio=self.min_lr_ratio)
