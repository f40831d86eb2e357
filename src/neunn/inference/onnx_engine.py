"""The ONNX Runtime engine: a NeuNN model exported to ONNX (float32 or int8), scored on the CPU.

    engine = OnnxEngine.from_file("runs/b7/export/best.onnx")     # metadata and weights digest travel in the file
    engine.logits(pixels); engine.backend                          # "onnx", or "onnx-int8" for a quantized model
    logits, features = engine.outputs(pixels)                      # features None for files exported before them

The graph maps normalised float32 N×3×S×S input to logits and (since the out-of-domain score) a second output, the
penultimate features; normalisation happens here with the same function as the PyTorch engine, and temperature and
softmax stay in the Predictor, so the backends differ only in the network's arithmetic. Export and quantization live
in :mod:`neunn.inference.export` and :mod:`neunn.inference.int8`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neunn.data.preprocess import normalize_batch
from neunn.errors import NeunnError

META_KEY = "neunn"  # the checkpoint's metadata, as JSON
WEIGHTS_SHA_KEY = "neunn_weights_sha256"  # the .safetensors the graph was exported from
INT8_AGREEMENT_KEY = "neunn_int8_agreement"  # present in quantized models only: their measured agreement
_BATCH = 64


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxEngine:
    """An ONNX Runtime session on the CPU that turns N×3×S×S uint8 batches into logits (thread-safe)."""

    def __init__(self, session: Any, meta: dict[str, Any], *, weights_sha256: str | None = None,
                 int8: bool = False) -> None:
        self.session, self.meta, self.weights_sha256 = session, meta, weights_sha256
        self.backend = "onnx-int8" if int8 else "onnx"
        self.input_name: str = session.get_inputs()[0].name
        self.output_names: list[str] = [o.name for o in session.get_outputs()]
        self.has_features = len(self.output_names) > 1  # files exported before the out-of-domain score have logits only

    @classmethod
    def from_file(cls, path: str | Path, *, threads: int = 0) -> OnnxEngine:
        """Open a model written by NeuNN's export or int8 quantization; its metadata travels inside the file."""
        import onnxruntime as ort  # imported here: only the ONNX backends need it

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            options.intra_op_num_threads = threads
        # A server shares its cores with image decoding and other requests: idle threads must sleep, not spin.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types for missing, corrupt or foreign files
            raise NeunnError(f"ONNX model {path} cannot be opened ({exc.__class__.__name__}).") from None
        custom = session.get_modelmeta().custom_metadata_map
        if META_KEY not in custom:
            raise NeunnError(f"ONNX model {path} was not exported by NeuNN (it has no NeuNN metadata).")
        return cls(session, json.loads(custom[META_KEY]), weights_sha256=custom.get(WEIGHTS_SHA_KEY),
                   int8=INT8_AGREEMENT_KEY in custom)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Float32 logits (N×C) for an N×3×S×S uint8 batch, run in chunks to bound memory."""
        return self._run(pixels, self.output_names[:1])[0]

    def outputs(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float32 logits and penultimate features; features are None for a file that has no such output."""
        out = self._run(pixels, self.output_names[:2])
        return out[0], (out[1] if self.has_features else None)

    def _run(self, pixels: torch.Tensor, names: list[str]) -> list[torch.Tensor]:
        mean, std = self.meta["mean"], self.meta["std"]
        chunks = [self.session.run(names, {self.input_name: normalize_batch(pixels[i : i + _BATCH], mean, std).numpy()})
                  for i in range(0, len(pixels), _BATCH)]
        if not chunks:
            return [torch.empty((0, len(self.meta["classes"]))), torch.empty((0, 0))][: len(names)]
        return [torch.from_numpy(np.concatenate([c[k] for c in chunks]).astype(np.float32, copy=False))
                for k in range(len(names))]
