"""What is done to the best checkpoint once the last epoch is over (rank 0, runs with a validation split), in order:

    for step in AFTER_TRAINING:                 # reestimate_batchnorm, calibrate, fit_out_of_domain_score
        step(FinishedRun(run, cfg, train_set, val_set, device, amp_dtype))

BatchNorm statistics come first, so that calibration and the out-of-domain fit both see the final statistics; the
out-of-domain score comes after calibration, since it binds to the final weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from neunn.checkpoint import read_checkpoint, save_checkpoint
from neunn.data.decoded import DecodedImages
from neunn.evaluation.metrics import expected_calibration_error
from neunn.inference.forward import batched_logits
from neunn.log import say
from neunn.model import classifier_from_checkpoint
from neunn.rundir import RunDir
from neunn.training.batchnorm_statistics import clean_batchnorm_statistics
from neunn.training.calibration import fit_temperature
from neunn.training.config import TrainConfig
from neunn.training.images import TrainingImages
from neunn.training.out_of_domain import fit_out_of_domain


@dataclass
class FinishedRun:
    """What the steps after training work with: the run folder (its best checkpoint), the config and the data."""

    run: RunDir
    cfg: TrainConfig
    train_set: TrainingImages
    val_set: DecodedImages
    device: torch.device
    amp_dtype: torch.dtype | None


def reestimate_batchnorm(done: FinishedRun) -> None:
    """Re-estimate the best checkpoint's BatchNorm statistics on clean training cells, when cfg.bn_clean_cells > 0."""
    if done.cfg.bn_clean_cells > 0:
        clean_batchnorm_statistics(done.run, done.train_set, done.cfg, done.device)


def calibrate(done: FinishedRun) -> None:
    """Fit temperature scaling on the validation split and store it in the best checkpoint's metadata."""
    cfg, best = done.cfg, done.run.checkpoint("best")
    tensors, meta = read_checkpoint(best)
    classifier = classifier_from_checkpoint(tensors, meta).to(done.device)
    logits = batched_logits(classifier, done.val_set.pixels, mean=cfg.mean, std=cfg.std,
                            batch_size=cfg.batch_size * 2, device=done.device, autocast=done.amp_dtype)
    temperature = fit_temperature(logits, done.val_set.labels)
    labels = done.val_set.labels.numpy()
    meta["temperature"] = temperature
    meta["calibration"] = {
        "fitted_on": "val", "n": len(labels),
        "ece_before": expected_calibration_error(torch.softmax(logits, 1).numpy(), labels),
        "ece_after": expected_calibration_error(torch.softmax(logits / temperature, 1).numpy(), labels),
    }
    save_checkpoint(best, tensors, meta)
    say(f"calibration: temperature {temperature:.3f}, validation ECE {meta['calibration']['ece_before']:.3f} -> "
        f"{meta['calibration']['ece_after']:.3f}")


def fit_out_of_domain_score(done: FinishedRun) -> None:
    """Fit the out-of-domain score on the training cells and set its threshold on the validation cells."""
    fit_out_of_domain(done.run, done.train_set, done.val_set, device=done.device)


AFTER_TRAINING: tuple[Callable[[FinishedRun], None], ...] = (reestimate_batchnorm, calibrate, fit_out_of_domain_score)


def run_after_training(done: FinishedRun) -> None:
    """Run every step of AFTER_TRAINING on the finished run, in order."""
    for step in AFTER_TRAINING:
        step(done)
