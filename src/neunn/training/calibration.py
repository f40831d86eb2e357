"""Temperature scaling: one scalar T fitted on validation logits so that softmax(logits / T) is calibrated.

    T = fit_temperature(val_logits, val_labels)      # stored in the best checkpoint's metadata as "temperature"

Guo et al. 2017: a single temperature fixes most of a modern network's over-confidence without changing its argmax,
so accuracy is untouched while confidence becomes usable for an "unidentified — review" threshold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 200) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` (optimised in log space, so T > 0)."""
    logits, labels = logits.detach().float().clone(), labels.detach().long().clone()  # may be inference tensors
    if len(labels) == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))
