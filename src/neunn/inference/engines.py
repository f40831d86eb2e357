"""Scoring engines: anything that turns a batch of uint8 cell images into logits, behind one interface.

    engine = load_torch_engine(RunDir(Path("runs/b7")), "best", device="cpu")    # the PyTorch model
    engine = open_engine(run, checkpoint="best", backend="onnx")                  # neunn.inference.backends
    engine.logits(pixels); engine.backend; engine.meta
    logits, features = engine.outputs(pixels)    # features: penultimate, for the out-of-domain score (None if absent)

Each engine says which backend it is (``torch``, ``onnx``, ``onnx-int8``) and carries the checkpoint's metadata; the
Predictor adds preprocessing, temperature, TTA and the decision policy on top, the same for every engine.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from neunn.checkpoint import read_checkpoint, unprefixed
from neunn.inference.forward import batched_logits, batched_outputs
from neunn.model import classifier_from_checkpoint
from neunn.rundir import RunDir
from neunn.runtime import resolve_device


class LogitsEngine(Protocol):
    """Turns an N×3×S×S uint8 batch into N×C float logits (PyTorch here, ONNX Runtime in onnx_engine)."""

    backend: str
    meta: dict[str, Any]

    def logits(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def outputs(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and penultimate features (None when the engine cannot give them, e.g. an older ONNX file)."""
        ...


class TorchEngine:
    """The PyTorch model of a checkpoint, in eval mode on one device."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.meta, self.device = meta, device

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        return batched_logits(self.model, pixels, mean=self.meta["mean"], std=self.meta["std"], device=self.device)

    def outputs(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return batched_outputs(self.model, pixels, mean=self.meta["mean"], std=self.meta["std"], device=self.device)


def load_torch_engine(run: RunDir, checkpoint: str = "best", *, device: str = "cpu") -> TorchEngine:
    """The PyTorch engine of a run's checkpoint (``last`` scores its EMA weights when the run kept an EMA)."""
    tensors, meta = read_checkpoint(run.checkpoint(checkpoint))
    if checkpoint == "last":
        tensors = unprefixed("ema" if meta["config"].get("ema_decay") else "model", tensors)
    return TorchEngine(classifier_from_checkpoint(tensors, meta), meta, resolve_device(device))
