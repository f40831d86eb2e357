"""Fit a run's out-of-domain score: at the end of training (after temperature calibration), or later on an existing
run without retraining.

    fit_out_of_domain(run, train_set, val_set, device=device)     # the end of neunn train (neunn.training.train)
    report = fit_run_out_of_domain("runs/b7")                     # neunn screen fit out-of-domain runs/b7: an older run gains it

The score (:mod:`neunn.inference.out_of_domain`) is fitted on the training split's features, as the model sees them
after training, and thresholded at a quantile of the validation split's scores: held-out cells of the training
domain, so the share of in-domain cells flagged is known (about 5 %) and the training cells' tighter fit does not bias
it. It is written beside the checkpoint; the weights are left untouched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from neunn.checkpoint import read_checkpoint_meta
from neunn.data.decoded import DecodedImages, decode_images
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.inference.engines import TorchEngine, load_torch_engine
from neunn.inference.out_of_domain import (
    DEFAULT_METHOD,
    DEFAULT_QUANTILE,
    METHODS,
    fit_scorer,
    ood_path_for,
    save_out_of_domain,
)
from neunn.log import say
from neunn.rundir import RunDir

_BATCH = 64


def _train_outputs(engine: TorchEngine, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of a training set held in memory or streamed from disk (anything with ``batches``)."""
    n = len(images)
    order = torch.arange(n)
    feats, labels = [], []
    for pixels, batch_labels, _ in images.batches(order, per_batch=_BATCH, steps=math.ceil(n / _BATCH)):
        if len(batch_labels):
            feats.append(engine.outputs(pixels.cpu())[1])
            labels.append(batch_labels.cpu())
    if not feats:
        raise NeunnError("The out-of-domain score needs at least one readable training image.")
    return torch.cat(feats), torch.cat(labels)


def fit_out_of_domain(run: RunDir, train_set: Any, val_set: DecodedImages, *, device: torch.device | str = "cpu",
                      method: str = DEFAULT_METHOD, quantile: float = DEFAULT_QUANTILE,
                      checkpoint: str = "best") -> dict[str, Any]:
    """Fit the score on ``train_set``, threshold it on ``val_set``, save it beside the checkpoint; return a summary."""
    if not len(val_set):
        raise NeunnError("The out-of-domain threshold is set on validation cells, and this run has none.")
    engine = load_torch_engine(run, checkpoint, device=str(device))
    train_features, train_labels = _train_outputs(engine, train_set)
    scorer = fit_scorer(method, train_features, train_labels)
    val_logits, val_features = engine.outputs(val_set.pixels.cpu())
    scorer = scorer.with_threshold(scorer.score(val_logits, val_features), quantile)
    path = save_out_of_domain(run, checkpoint, scorer)
    say(f"out-of-domain score: {method} fitted on {len(train_labels)} training cells, threshold "
        f"{scorer.threshold:.4g} (the {quantile:.0%} quantile of {len(val_set)} validation cells) in {path.name}")
    return {**scorer.as_dict(), "path": str(path)}


def _decode_split(run: RunDir, data_dir: Path, name: str, meta: dict[str, Any], workers: int) -> DecodedImages:
    split = load_split(run.splits)
    images = decode_images(data_dir, split.splits.get(name, []), split.classes, size=int(meta["img_size"]),
                           jpeg_draft=bool(meta.get("jpeg_draft", False)), crop=float(meta.get("crop", 1.0)),
                           workers=workers, progress=True, desc=f"decode {name}")
    for path, reason in images.skipped:
        say(f"  skipped {path}: {reason}")
    return images


def fit_run_out_of_domain(run_dir: str | Path, *, method: str = DEFAULT_METHOD, quantile: float = DEFAULT_QUANTILE,
                          checkpoint: str = "best", device: str = "cpu", workers: int = 2) -> dict[str, Any]:
    """Fit (or refit) the out-of-domain score of an existing run from its own train and val splits."""
    if method not in METHODS:  # checked here too, before minutes of decoding
        raise NeunnError(f"Unknown out-of-domain method '{method}'; use one of {', '.join(METHODS)}.")
    if not 0.0 < quantile < 1.0:
        raise NeunnError(f"The out-of-domain quantile must be between 0 and 1, got {quantile}.")
    run = RunDir(Path(run_dir))
    run.require_trained()
    data_dir = run.read_info().get("data_dir")
    if not data_dir or not Path(data_dir).is_dir():
        raise NeunnError(f"The out-of-domain score is fitted on the run's training images, and its dataset "
                         f"{data_dir} is not available; run it where the data is.")
    meta = read_checkpoint_meta(run.checkpoint(checkpoint))
    train_set = _decode_split(run, Path(data_dir), "train", meta, workers)
    val_set = _decode_split(run, Path(data_dir), "val", meta, workers)
    if ood_path_for(run, checkpoint).is_file():
        say(f"replacing {ood_path_for(run, checkpoint)}")
    return fit_out_of_domain(run, train_set, val_set, device=device, method=method, quantile=quantile,
                             checkpoint=checkpoint)
