"""The out-of-domain score: how far a cell lies from the cells the model was trained on, and its flag.

    scorer = load_out_of_domain(run, "best")          # None for a run without one (older runs): no flag, never an error
    scores = scorer.score(logits, features)           # one float per cell; higher = further from the training cells
    flags = scorer.flags(scores)                      # above the threshold: "outside the model's experience"

    scorer = fit_scorer("mahalanobis", train_features, train_labels)        # at training time (neunn.training)
    scorer = scorer.with_threshold(val_scores)                                # 95th percentile of validation scores
    save_out_of_domain(run, "best", scorer)           # RUN_DIR/checkpoints/best.ood.safetensors (+ .json to read)

A calibrated confidence says how sure the model is among its classes; it cannot say that a cell looks like nothing it
was trained on, and on another laboratory's cells a PBC model is confidently wrong (docs/results.md §5). The methods:

* ``mahalanobis`` (Lee et al. 2018): class-conditional Gaussians with one shared covariance on the penultimate
  features; the score is the squared Mahalanobis distance to the nearest class mean. The covariance is shrunk
  (Ledoit–Wolf), so a few-shot fit with fewer cells than feature dimensions stays well defined.
* ``knn`` (Sun et al. 2022): distance from the L2-normalised features to their k-th nearest training cell.
* ``energy`` (Liu et al. 2020) and ``max_logit``: from the logits alone (−logsumexp, −max); nothing to fit but the
  threshold.

The threshold is a quantile of the scores of held-out in-domain cells (validation), so about 1 − quantile of in-domain
cells are flagged by design. The file records the SHA-256 of the weights it was fitted on: after the checkpoint changes
the score is stale and is not used (the Predictor then gives no flag) until ``neunn screen fit out-of-domain`` fits it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from neunn.atomic import write_atomic, write_text_atomic
from neunn.checkpoint import CHECKPOINT_FORMAT, read_checkpoint
from neunn.errors import NeunnError
from neunn.inference.export import weights_sha256
from neunn.log import say
from neunn.rundir import RunDir

METHODS = ("mahalanobis", "knn", "energy", "max_logit")
FEATURE_METHODS = ("mahalanobis", "knn")
DEFAULT_METHOD = "mahalanobis"  # chosen on pbc-dev against chula-wbc: docs/results.md §5
DEFAULT_QUANTILE = 0.95  # about 5 % of in-domain cells flagged
KNN_K = 10
_META_KEY = "neunn"


@dataclass(frozen=True)
class OodScorer:
    """A fitted out-of-domain score (method and its tensors) and the threshold above which a cell is flagged."""

    method: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    threshold: float | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what it was fitted on: counts, quantile, shrinkage...

    @property
    def needs_features(self) -> bool:
        """Whether the score needs penultimate features (else logits suffice)."""
        return self.method in FEATURE_METHODS

    def score(self, logits: torch.Tensor, features: torch.Tensor | None) -> np.ndarray:
        """One score per cell (float64; higher = further from the training cells)."""
        if self.method == "energy":
            return (-torch.logsumexp(logits.double(), dim=1)).numpy()
        if self.method == "max_logit":
            return (-logits.double().max(dim=1).values).numpy()
        if features is None:
            raise NeunnError(f"The {self.method} out-of-domain score needs the model's features, which this engine "
                             "does not give.")
        f = features.double()
        if self.method == "mahalanobis":
            return _mahalanobis(f, self.tensors["means"].double(), self.tensors["precision"].double())
        return _knn(f, self.tensors["bank"].double(), int(self.info["k"]))

    def flags(self, scores: np.ndarray) -> np.ndarray:
        """Which scores lie above the threshold (out of domain)."""
        if self.threshold is None:
            raise NeunnError("This out-of-domain score has no threshold yet; fit one on validation cells.")
        return np.asarray(scores) > self.threshold

    def with_threshold(self, scores: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> OodScorer:
        """This scorer with its threshold at ``quantile`` of held-out in-domain ``scores``."""
        scores = np.asarray(scores, dtype=np.float64)
        if not 0.0 < quantile < 1.0:
            raise NeunnError(f"The out-of-domain quantile must be between 0 and 1, got {quantile}.")
        if not len(scores):
            raise NeunnError("The out-of-domain threshold needs at least one validation cell.")
        threshold = float(np.quantile(scores, quantile))
        return replace(self, threshold=threshold, info={**self.info, "quantile": quantile, "n_threshold": len(scores)})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description: method, threshold and what it was fitted on."""
        return {"method": self.method, "threshold": self.threshold, **self.info}


def _mahalanobis(f: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``f`` to its nearest class mean."""
    projected = f @ precision
    d2 = (projected * f).sum(1, keepdim=True) - 2 * projected @ means.T + ((means @ precision) * means).sum(1)
    return d2.min(dim=1).values.clamp(min=0).numpy()


def _knn(f: torch.Tensor, bank: torch.Tensor, k: int) -> np.ndarray:
    """Euclidean distance from each normalised row of ``f`` to its k-th nearest (normalised) training feature."""
    cosine = torch.nn.functional.normalize(f, dim=1) @ bank.T
    kth = cosine.topk(min(k, bank.shape[0]), dim=1).values[:, -1]
    return (2 - 2 * kth).clamp(min=0).sqrt().numpy()


def fit_scorer(method: str, features: torch.Tensor | None, labels: torch.Tensor, *, k: int = KNN_K) -> OodScorer:
    """Fit ``method`` on the training cells' penultimate features and labels (no threshold yet)."""
    if method not in METHODS:
        raise NeunnError(f"Unknown out-of-domain method '{method}'; use one of {', '.join(METHODS)}.")
    info: dict[str, Any] = {"n_fit": len(labels)}
    if method not in FEATURE_METHODS:
        return OodScorer(method, {}, None, info)
    if features is None or not len(features):
        raise NeunnError(f"The {method} out-of-domain score needs the features of at least one training cell.")
    f = features.double()
    if method == "knn":
        bank = torch.nn.functional.normalize(f, dim=1).float()
        return OodScorer(method, {"bank": bank}, None, {**info, "k": min(k, len(bank))})
    return _fit_mahalanobis(f, labels.long(), info)


def _fit_mahalanobis(f: torch.Tensor, labels: torch.Tensor, info: dict[str, Any]) -> OodScorer:
    """Class means and the precision of the shared within-class covariance, shrunk by Ledoit–Wolf."""
    from sklearn.covariance import ledoit_wolf  # imported here: only fitting needs it

    present = sorted(set(labels.tolist()))  # a class without training cells has no mean (few-shot data)
    means = torch.stack([f[labels == c].mean(0) for c in present])
    centred = f - means[torch.as_tensor([present.index(c) for c in labels.tolist()])]
    covariance, shrinkage = ledoit_wolf(centred.numpy(), assume_centered=True)
    precision = torch.linalg.pinv(torch.from_numpy(covariance), hermitian=True)
    return OodScorer("mahalanobis", {"means": means.float(), "precision": precision.float()}, None,
                     {**info, "classes_fitted": present, "shrinkage": float(shrinkage)})


def ood_path_for(run: RunDir, checkpoint: str = "best") -> Path:
    """Where a run keeps the out-of-domain score of a checkpoint: beside it, in its own safetensors file."""
    return run.ood_file(checkpoint)


def save_out_of_domain(run: RunDir, checkpoint: str, scorer: OodScorer) -> Path:
    """Write the scorer beside the checkpoint (atomically), bound to the checkpoint's current weights."""
    if scorer.threshold is None:
        raise NeunnError("An out-of-domain score is saved with its threshold; fit one on validation cells first.")
    meta = {"format": CHECKPOINT_FORMAT, "kind": "out_of_domain", **scorer.as_dict(),
            "weights_sha256": weights_sha256(run, checkpoint)}
    header = json.dumps(meta, allow_nan=False)
    path = ood_path_for(run, checkpoint)
    tensors = {k: v.detach().contiguous().cpu() for k, v in scorer.tensors.items()}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={_META_KEY: header}))
    write_text_atomic(run.ood_file(checkpoint, ".json"), json.dumps(meta, indent=1))  # a copy to read
    return path


def load_out_of_domain(run: RunDir, checkpoint: str = "best") -> OodScorer | None:
    """The run's out-of-domain scorer, or None when it has none or it was fitted on other weights (said once)."""
    path = ood_path_for(run, checkpoint)
    if not path.is_file():
        return None
    tensors, meta = read_checkpoint(path)
    if meta.get("weights_sha256") != weights_sha256(run, checkpoint):
        say(f"note: {path} was fitted on other weights than the current {checkpoint} checkpoint and is not used; "
            f"run `neunn screen fit out-of-domain {run.root}` to fit it again")
        return None
    info = {k: v for k, v in meta.items() if k not in ("format", "kind", "method", "threshold", "weights_sha256")}
    return OodScorer(meta["method"], tensors, float(meta["threshold"]), info)
