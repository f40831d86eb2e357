"""Auxiliary attribute heads: one linear layer per morphological attribute on the classifier's pooled features, trained
beside the class head so the backbone also learns what the attributes describe (vacuoles, granules, nucleus shape).

    joint = WithAttributes(model, table.spec())        # model: a timm classifier; joint(x) -> (logits, [A tensors])
    loss = cross_entropy(logits, labels) + cfg.attribute_weight * attribute_loss(attribute_logits, targets)

Only training uses them: the best checkpoint holds the classifier alone, so prediction, export and ``init_from`` see an
ordinary model; the last checkpoint also holds the heads (prefix ``attributes.``) so that a run resumes exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PREFIX = "attributes"


class WithAttributes(nn.Module):
    """A timm classifier and a head per attribute on its pooled features (after its dropout, like its own head)."""

    def __init__(self, model: nn.Module, spec: dict[str, list[str]]) -> None:
        super().__init__()
        self.model = model
        self.heads = nn.ModuleList(nn.Linear(model.num_features, len(values)) for values in spec.values())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return self.model.get_classifier()(features), [head(features) for head in self.heads]


def attribute_loss(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Mean over attributes of the cross-entropy on the cells whose value is known (-1: unknown, left out).

    A batch with no known value of an attribute adds 0 for it, still connected to the graph (every head gets a gradient,
    which DistributedDataParallel requires)."""
    losses = []
    for k, head_logits in enumerate(logits):
        known = targets[:, k] >= 0
        total = F.cross_entropy(head_logits.float(), targets[:, k].clamp(min=0), reduction="none")
        losses.append((total * known).sum() / known.sum().clamp(min=1))
    return torch.stack(losses).mean()
