"""One epoch's validation: the model scored on the run's validation split, as the figures of the epoch's log row.

    row.update(validate(model, val_set, cfg, device=device, amp_dtype=None, classes=classes))
    # val_loss, val_accuracy, val_macro_f1, val_auc, val_ap (None when no class has a defined average precision)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neunn.data.decoded import DecodedImages
from neunn.evaluation.metrics import compute_metrics
from neunn.evaluation.rare_class import average_precision
from neunn.inference.forward import batched_logits
from neunn.training.config import TrainConfig


def validate(model: torch.nn.Module, val_set: DecodedImages, cfg: TrainConfig, *, device: torch.device,
             amp_dtype: torch.dtype | None, classes: list[str]) -> dict[str, float | None]:
    """The loss, accuracy, macro-F1, mean one-vs-rest ROC AUC and mean average precision of ``model`` on ``val_set``."""
    channels_last = cfg.channels_last and device.type == "cuda"
    logits = batched_logits(model, val_set.pixels, mean=cfg.mean, std=cfg.std, batch_size=cfg.batch_size * 2,
                            device=device, autocast=amp_dtype, channels_last=channels_last)
    loss = F.cross_entropy(logits, val_set.labels).item()
    labels, probs = val_set.labels.numpy(), torch.softmax(logits, 1).numpy()
    metrics = compute_metrics(labels, probs, classes)
    precisions = [average_precision(probs[:, k], labels == k) for k in range(len(classes))]
    defined = [p for p in precisions if p is not None]
    return {"val_loss": loss, "val_accuracy": metrics.overall.accuracy,
            "val_macro_f1": metrics.overall.macro.f1,
            "val_auc": metrics.overall.macro.roc_auc,
            "val_ap": sum(defined) / len(defined) if defined else None}
