"""Classifiers built by name through timm, from scratch unless pretrained weights are explicitly asked for.

    model = create_classifier("efficientnet_b7", num_classes=7, drop_rate=0.2)
    model = classifier_for_config(cfg, num_classes=7)   # the model a TrainConfig describes, as neunn train builds it
    model = classifier_from_checkpoint(tensors, meta)   # rebuild a trained model from a NeuNN checkpoint
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from neunn.errors import NeunnError


def require_known_model(arch: str) -> None:
    """Refuse, in one sentence, a model name that timm does not know (naming a few similar ones)."""
    if not isinstance(arch, str) or not timm.is_model(arch):
        close = timm.list_models(f"*{str(arch).split('_')[0]}*")[:6] if str(arch) else []
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise NeunnError(f"Unknown model '{arch}'; use a timm model name{hint}.")


def create_classifier(
    arch: str, num_classes: int, *, pretrained: bool = False, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
    head_init_scale: float = 1.0,
) -> nn.Module:
    """A timm model with a fresh ``num_classes`` head; pretrained weights only when ``pretrained`` is True.

    ``head_init_scale`` multiplies the head's initial weights and bias. timm initialises EfficientNet heads uniformly
    in ±1/sqrt(num_classes), which for a few classes gives large first logits (a first loss well above ln(num_classes),
    the loss of a uniform guess; measured for B7 in docs/results.md §2); 0 starts from uniform predictions.
    """
    require_known_model(arch)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": drop_rate}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    try:
        model = timm.create_model(arch, pretrained=pretrained, **kwargs)
    except TypeError:
        kwargs.pop("drop_path_rate", None)  # a few architectures have no stochastic depth
        model = timm.create_model(arch, pretrained=pretrained, **kwargs)
    except (RuntimeError, OSError) as exc:
        if pretrained:
            raise NeunnError(
                f"Pretrained weights for '{arch}' could not be loaded ({exc.__class__.__name__}); "
                "they must already be in the local timm/Hugging Face cache, or set pretrained=false."
            ) from None
        raise
    if head_init_scale != 1.0:
        with torch.no_grad():
            for p in model.get_classifier().parameters():
                p.mul_(head_init_scale)
    return model


def classifier_for_config(cfg: Any, num_classes: int) -> nn.Module:
    """The model a ``TrainConfig`` describes, built the one way ``neunn train`` and its benchmarks build it."""
    return create_classifier(cfg.model, num_classes, pretrained=cfg.pretrained, drop_rate=cfg.drop_rate,
                             drop_path_rate=cfg.drop_path_rate, head_init_scale=cfg.head_init_scale)


def classifier_from_checkpoint(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (strictly)."""
    model = create_classifier(meta["arch"], len(meta["classes"]))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError:
        raise NeunnError(f"The checkpoint's weights do not match the architecture '{meta['arch']}' it names.") from None
    return model.eval()
