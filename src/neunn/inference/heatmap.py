"""Class-activation heatmaps (Grad-CAM through Captum's LayerGradCam): which part of a cell drove the model to a class.

    cam = GradCam.for_predictor(predictor)              # its own copy of the PyTorch model, beside the serving one
    heat = cam.heat(pixels, target="GBI")               # S×S float array in [0, 1] for a 3×S×S uint8 model input
    png = overlay_png(heat, size=(360, 363))            # transparent RGBA PNG to lay over the cell image

Grad-CAM is taken at the last feature stage (timm's ``feature_info``), the deepest layer that still has a spatial map.
Captum hooks into the module it explains, so the heatmap model is a private copy behind a lock: a heatmap never
disturbs, nor is disturbed by, predictions running on other threads. With the ONNX backend the copy is rebuilt from
the run's PyTorch checkpoint, since an ONNX graph gives no gradients.
"""

from __future__ import annotations

import copy
import io
import threading
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from neunn.data.preprocess import normalize_batch
from neunn.errors import NeunnError
from neunn.inference.engines import TorchEngine, load_torch_engine

# Heat under this fraction of the peak stays fully transparent, so the cell remains visible around the hot spot.
_TRANSPARENT_BELOW = 0.15
_MAX_ALPHA = 0.6


def explained_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM explains: timm's last feature stage, else the last convolution."""
    info = getattr(model, "feature_info", None)
    if info:
        try:
            return model.get_submodule(info[-1]["module"])
        except (AttributeError, KeyError, IndexError, TypeError):
            pass
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise NeunnError("Heatmaps need a convolutional model; this architecture has no spatial feature map.")
    return convolutions[-1]


class GradCam:
    """Grad-CAM heatmaps for one classifier; thread-safe (one heatmap at a time)."""

    def __init__(self, model: nn.Module, meta: dict[str, Any]) -> None:
        from captum.attr import LayerGradCam  # imported here: only heatmaps need Captum

        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)  # gradients are needed for activations only, not for weights
        self.classes: list[str] = list(meta["classes"])
        self.mean, self.std = meta["mean"], meta["std"]
        self._cam = LayerGradCam(self.model, explained_layer(self.model))
        self._lock = threading.Lock()

    @classmethod
    def for_predictor(cls, predictor: Any) -> GradCam | None:
        """A Grad-CAM on a private copy of the predictor's PyTorch model, or None when no PyTorch weights exist."""
        if isinstance(predictor.engine, TorchEngine):
            return cls(copy.deepcopy(predictor.engine.model).cpu(), predictor.meta)
        if predictor.run is None:
            return None
        # An ONNX graph gives no gradients: rebuild the PyTorch model from the run the predictor was loaded from.
        return cls(load_torch_engine(predictor.run, predictor.checkpoint).model, predictor.meta)

    def class_index(self, target: str | int) -> int:
        """Index of a class given by name or index, with a one-sentence error for an unknown one."""
        if isinstance(target, int) and 0 <= target < len(self.classes):
            return target
        if target in self.classes:
            return self.classes.index(target)
        raise NeunnError(f"Unknown class '{target}'; the model's classes are {', '.join(self.classes)}.")

    def heat(self, pixels: torch.Tensor, *, target: str | int) -> np.ndarray:
        """Grad-CAM map (H×W, 0–1, upsampled to the input size) of class ``target`` for one 3×H×W uint8 image."""
        index = self.class_index(target)
        x = normalize_batch(pixels.unsqueeze(0), self.mean, self.std)
        with self._lock, torch.enable_grad():
            attribution = self._cam.attribute(x, target=index, relu_attributions=True)
        heat = torch.nn.functional.interpolate(attribution.detach().float(), size=tuple(pixels.shape[1:]),
                                               mode="bilinear", align_corners=False)[0, 0].clamp(min=0)
        peak = float(heat.max())
        return (heat / peak).numpy() if peak > 0 else np.zeros(tuple(pixels.shape[1:]), dtype=np.float32)


def overlay_png(heat: np.ndarray, *, size: tuple[int, int] | None = None) -> bytes:
    """A transparent RGBA PNG colouring ``heat`` (0–1) with the turbo colormap, resized to ``size`` (w, h)."""
    from matplotlib import colormaps  # imported here: the colormap table only

    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    if size is not None and (size[0], size[1]) != (heat.shape[1], heat.shape[0]):
        heat = np.asarray(Image.fromarray(heat, mode="F").resize(size, Image.Resampling.BILINEAR))
    rgba = colormaps["turbo"](heat)
    alpha = np.clip((heat - _TRANSPARENT_BELOW) / (1.0 - _TRANSPARENT_BELOW), 0.0, 1.0) * _MAX_ALPHA
    rgba[..., 3] = alpha
    buffer = io.BytesIO()
    Image.fromarray((rgba * 255).round().astype(np.uint8), mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()
