"""The checkpoints of a training run, kept as timm's CheckpointSaver keeps them: after every epoch the ``last``
checkpoint (everything a resumed run restores) and, when the epoch is the best so far, the ``best`` one.

    saver = CheckpointSaver(setup, classifier, ema, optimizer, scaler, attributes)
    saver.resume()                 # --resume: the last checkpoint restored, log lines written after it dropped
    saver.save(row)                # rank 0, after each epoch: best (when better), the log line, then last

The best epoch is the one with the highest selection score (``cfg.select_by`` read from its validation figures), its
validation loss breaking ties; a run without a validation split keeps its last epoch. Both files are written
atomically (:func:`neunn.checkpoint.save_checkpoint`), so a run stopped at any moment leaves whole checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.utils import ModelEmaV3

from neunn import __version__
from neunn.checkpoint import (optimizer_from_tensors, optimizer_to_tensors, prefixed, read_checkpoint,
                              read_checkpoint_meta, save_checkpoint, unprefixed)
from neunn.configfile import config_to_dict
from neunn.errors import NeunnError
from neunn.log import say
from neunn.training.attribute_heads import PREFIX as ATTRIBUTE_PREFIX
from neunn.training.build import Attributes
from neunn.training.images import JPEG_DRAFT
from neunn.training.setup import TrainingRun

_SELECTED_FIGURE = {"macro_f1": "val_macro_f1", "auc": "val_auc", "ap": "val_ap"}


def selection_score(row: dict[str, Any], select_by: str) -> float:
    """The figure an epoch is chosen by (higher is better): cfg.select_by read from its validation row."""
    if select_by == "last":
        return float(row["epoch"])
    if select_by == "loss":
        return -row["val_loss"]
    value = row[_SELECTED_FIGURE[select_by]]
    return -1.0 if value is None else value  # undefined (a class absent from validation): never better than defined


class CheckpointSaver:
    """Writes a run's best and last checkpoints and knows the best epoch so far; restores the last one on resume."""

    def __init__(self, setup: TrainingRun, classifier: torch.nn.Module, ema: ModelEmaV3 | None,
                 optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, attributes: Attributes | None) -> None:
        self.setup, self.run = setup, setup.run
        self.classifier, self.ema, self.optimizer, self.scaler, self.attributes = (classifier, ema, optimizer, scaler,
                                                                                   attributes)
        self.start_epoch = 1  # the first epoch still to train
        self.best_score = -math.inf  # selection_score of the best epoch
        self.best_loss = math.inf  # its validation loss: the tie-break
        self.best_epoch = 0

    def resume(self) -> None:
        """Load the last checkpoint into the classifier, EMA, attribute heads, optimiser and scaler, and drop the log
        lines written after it."""
        last, is_main = self.run.checkpoint("last"), self.setup.ctx.is_main
        if not last.with_suffix(".safetensors").is_file():
            if is_main:
                self.run.trim_log("epoch", 0)
            say("no checkpoint was written before the run stopped; starting from epoch 1")
            return
        tensors, meta = read_checkpoint(last)
        self.classifier.load_state_dict(unprefixed("model", tensors))
        if self.attributes is not None:
            if meta.get("attributes") != self.attributes.table.spec():
                raise NeunnError(f"The attribute table {self.attributes.table.source} has other columns or values than "
                                 "when this run started; restore it, or start a new run.")
            self.attributes.heads.load_state_dict(unprefixed(ATTRIBUTE_PREFIX, tensors))
        if self.ema is not None:
            self.ema.module.load_state_dict(unprefixed("ema", tensors))
        self.optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["optimizer"]))
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        if is_main:
            self.run.trim_log("epoch", meta["epoch"])
        say(f"resuming after epoch {meta['epoch']}")
        self.start_epoch = meta["epoch"] + 1
        # a checkpoint written before select_by existed holds the macro-F1 it was chosen by under its old name
        self.best_score = meta.get("best_val_score", meta.get("best_val_macro_f1", -math.inf))
        self.best_loss, self.best_epoch = meta["best_val_loss"], meta["best_epoch"]

    def save(self, row: dict[str, Any]) -> None:
        """After an epoch (its log ``row``): the best checkpoint when the epoch is better, then the log line, then the
        last checkpoint, so that a resume never finds a log line newer than its checkpoint."""
        validated = "val_loss" in row
        score = selection_score(row, self.setup.cfg.select_by) if validated else -math.inf
        improved = validated and (score, -row["val_loss"]) > (self.best_score, -self.best_loss)
        if improved or (not validated and row["epoch"] == self.setup.cfg.epochs):  # no validation split: the last
            self.best_score, self.best_loss, self.best_epoch = score, row.get("val_loss", math.inf), row["epoch"]
            self._save_best(row)
        row["best_epoch"] = self.best_epoch
        self.run.append_log(row)
        self._save_last(row)

    def best_validation(self) -> dict[str, float]:
        """The validation figures stored with the best checkpoint (none when the run had no validation split)."""
        if not self.run.checkpoint("best").with_suffix(".safetensors").is_file():
            return {}
        return read_checkpoint_meta(self.run.checkpoint("best")).get("val", {})

    def _save_best(self, row: dict[str, Any]) -> None:
        """The weights validation scored (the EMA's when there is one) and the epoch's validation figures."""
        weights = self.ema.module if self.ema is not None else self.classifier
        val = {k: v for k, v in row.items() if k.startswith("val_")}
        save_checkpoint(self.run.checkpoint("best"), weights.state_dict(), self._meta(row, "best", {
            "weights": "ema" if self.ema is not None else "model", "val": val}))

    def _save_last(self, row: dict[str, Any]) -> None:
        """Everything :meth:`resume` restores: weights, attribute heads, EMA, optimiser, scaler and the best so far."""
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        tensors = {**prefixed("model", self.classifier.state_dict()), **opt_tensors}
        if self.attributes is not None:
            tensors.update(prefixed(ATTRIBUTE_PREFIX, self.attributes.heads.state_dict()))
        if self.ema is not None:
            tensors.update(prefixed("ema", self.ema.module.state_dict()))
        save_checkpoint(self.run.checkpoint("last"), tensors, self._meta(row, "last", {
            "optimizer": opt_meta, "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "best_val_score": self.best_score if math.isfinite(self.best_score) else -1e30,
            "best_val_loss": self.best_loss if math.isfinite(self.best_loss) else 1e30,
            "best_epoch": self.best_epoch,
            "attributes": self.attributes.table.spec() if self.attributes is not None else None}))

    def _meta(self, row: dict[str, Any], kind: str, extra: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's metadata: what prediction needs to rebuild and feed the model, and where training stood."""
        cfg, split = self.setup.cfg, self.setup.split
        return {"kind": kind, "arch": cfg.model, "classes": split.classes, "img_size": cfg.img_size, "crop": cfg.crop,
                "mean": list(cfg.mean), "std": list(cfg.std), "jpeg_draft": JPEG_DRAFT, "config": config_to_dict(cfg),
                "split_digest": split.digest(), "neunn_version": __version__, "epoch": row["epoch"],
                "step": row["step"], **extra}
