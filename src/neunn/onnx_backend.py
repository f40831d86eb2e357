"""ONNX export of a run's model, and the ONNX Runtime engine that the Predictor uses for ``backend="onnx"`` on CPU.

    report = export_onnx("runs/b7", "b7.onnx")     # export, then check ONNX Runtime against PyTorch on real test images
    report["max_abs_diff"]                         # largest |p_onnx - p_torch| over the checked images' probabilities
    predictor = Predictor.from_run("runs/b7", backend="onnx")   # scores with RUN_DIR/export/best.onnx

Where the model lives for ``--backend onnx``: ``RUN_DIR/export/<checkpoint>.onnx``, exported on first use when missing.
The file carries the checkpoint's metadata and the SHA-256 of the weights it was exported from, so a model exported
before the checkpoint changed (a resumed run, a new calibration) is noticed and exported again, never served stale.

The graph maps normalised float32 N×3×S×S input to logits; normalisation (``normalize_batch``), temperature and
softmax stay in Python, shared with the PyTorch backend, so both backends differ only in the network's arithmetic.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neunn.atomic import write_atomic
from neunn.data.image_io import UnreadableImage
from neunn.data.preprocess import load_pixels, normalize_batch
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.predictor import Predictor, create_engine
from neunn.run_setup import say
from neunn.rundir import RunDir

# Probabilities of ONNX Runtime and PyTorch agree to ~1e-6 in float32; anything near this bound is a broken export.
MAX_PROB_DIFF = 1e-3
META_KEY = "neunn"
WEIGHTS_SHA_KEY = "neunn_weights_sha256"
_BATCH = 64


def onnx_path_for(run: RunDir, checkpoint: str = "best") -> Path:
    """Where ``--backend onnx`` keeps the exported model of a run's checkpoint."""
    return run.root / "export" / f"{checkpoint}.onnx"


def _weights_path(run: RunDir, checkpoint: str) -> Path:
    return run.checkpoint(checkpoint).with_suffix(".safetensors")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxEngine:
    """An ONNX Runtime session on the CPU that turns N×3×S×S uint8 batches into logits (thread-safe)."""

    def __init__(self, session: Any, meta: dict[str, Any], *, weights_sha256: str | None = None) -> None:
        self.session = session
        self.meta = meta
        self.mean, self.std = meta["mean"], meta["std"]
        self.weights_sha256 = weights_sha256
        # The run and checkpoint the graph came from (set by from_run), for what ONNX cannot do: Grad-CAM needs
        # gradients, so heatmaps rebuild the PyTorch model from there.
        self.run: RunDir | None = None
        self.checkpoint: str | None = None
        self.int8 = False  # whether the graph is the quantized one
        self.input_name: str = session.get_inputs()[0].name

    @classmethod
    def from_file(cls, path: str | Path, *, threads: int = 0) -> OnnxEngine:
        """Open a model written by :func:`export_onnx`; its metadata travels inside the file."""
        import onnxruntime as ort  # imported here: only the ONNX backend needs it

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
        return cls(session, json.loads(custom[META_KEY]), weights_sha256=custom.get(WEIGHTS_SHA_KEY))

    @classmethod
    def from_run(cls, run: RunDir, *, checkpoint: str = "best", threads: int = 0,
                 int8: bool = False) -> tuple[OnnxEngine, dict[str, Any]]:
        """The engine of a run's checkpoint, exporting RUN_DIR/export/<checkpoint>.onnx first when missing or stale.

        ``int8`` uses the quantized RUN_DIR/export/<checkpoint>.int8.onnx instead (see ``neunn.quantize``).
        """
        from neunn.quantize import int8_path_for, write_int8_model

        path, weights = (int8_path_for if int8 else onnx_path_for)(run, checkpoint), _weights_path(run, checkpoint)
        engine = cls.from_file(path, threads=threads) if path.is_file() else None
        if engine is None or engine.weights_sha256 != _sha256(weights):
            reason = "missing" if engine is None else "older than the checkpoint"
            say(f"ONNX model {path} is {reason}; {'quantizing' if int8 else 'exporting'} it now")
            if int8:
                write_int8_model(run, checkpoint)
            else:
                write_onnx_model(run, path, checkpoint=checkpoint)
            engine = cls.from_file(path, threads=threads)
        engine.run, engine.checkpoint, engine.int8 = run, checkpoint, int8
        return engine, engine.meta

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Float32 logits (N×C) for an N×3×S×S uint8 batch, run in chunks to bound memory."""
        out = [self.session.run(None, {self.input_name: normalize_batch(pixels[i : i + _BATCH], self.mean,
                                                                    self.std).numpy()})[0]
               for i in range(0, len(pixels), _BATCH)]
        if not out:
            return torch.empty((0, len(self.meta["classes"])))
        return torch.from_numpy(np.concatenate(out).astype(np.float32, copy=False))


def torch_engine(run: RunDir, checkpoint: str = "best") -> tuple[Any, dict[str, Any]]:
    """The PyTorch engine of a run's checkpoint on the CPU: what is exported, and the reference to check it with."""
    return create_engine(run, checkpoint=checkpoint, backend="torch", device="cpu")


def write_onnx_model(run: RunDir, out: Path, *, checkpoint: str = "best") -> Path:
    """Export a run's checkpoint to ``out`` (atomically), with the checkpoint's metadata embedded; no check."""
    engine, meta = torch_engine(run, checkpoint)
    _export(engine.model, meta, Path(out), weights_sha256=_sha256(_weights_path(run, checkpoint)))
    return Path(out)


def _export(model: torch.nn.Module, meta: dict[str, Any], out: Path, *, weights_sha256: str) -> None:
    size = int(meta["img_size"])
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        program = torch.onnx.export(model.eval(), (example,), None, input_names=["pixels"], output_names=["logits"],
                                    dynamo=True, external_data=False, dynamic_shapes=({0: batch},), verbose=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; say which model and why
        raise NeunnError(f"Exporting '{meta['arch']}' to ONNX failed ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'no message'}).") from None
    program.model.metadata_props[META_KEY] = json.dumps(meta, allow_nan=False)
    program.model.metadata_props[WEIGHTS_SHA_KEY] = weights_sha256
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(out, lambda tmp: program.save(str(tmp)))
    except OSError as exc:
        raise NeunnError(f"Cannot write the ONNX model to {out} ({exc.strerror or exc}).") from None


def split_images(run: RunDir, split: str, n: int, size: int, *,
                 jpeg_draft: bool) -> tuple[torch.Tensor | None, str]:
    """Up to ``n`` decoded images of one of the run's splits (classes taken in turn), or None when the data is gone."""
    data_dir = run.read_info().get("data_dir")
    entries = []
    if data_dir and run.splits.is_file() and Path(data_dir).is_dir():
        by_class: dict[str, list] = {}
        for entry in load_split(run.splits).splits.get(split, []):
            by_class.setdefault(entry.label, []).append(entry)
        queues = list(by_class.values())
        entries = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    pixels = []
    for entry in entries:
        if len(pixels) == n:
            break
        try:
            pixels.append(load_pixels(Path(data_dir) / entry.path, size, jpeg_draft=jpeg_draft))
        except UnreadableImage:
            continue
    if not pixels:
        return None, f"no {split}-split image"
    return torch.stack(pixels), f"{len(pixels)} {split}-split image(s) of {data_dir}"


def _check_images(run: RunDir, img_size: int, n: int, *, jpeg_draft: bool) -> tuple[torch.Tensor, str]:
    """Up to ``n`` decoded test-split images, or random pixels when the data is gone."""
    pixels, source = split_images(run, "test", n, img_size, jpeg_draft=jpeg_draft)
    if pixels is not None:
        return pixels, source
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (n, 3, img_size, img_size), dtype=torch.uint8, generator=generator)
    return noise, f"{n} random image(s) (the run's dataset is not available)"


def export_onnx(run_dir: str | Path, out_path: str | Path | None = None, *, checkpoint: str = "best",
                n_check: int = 32) -> dict[str, Any]:
    """Export a run's model to ONNX, check ONNX Runtime against PyTorch on real images and report the difference."""
    run = RunDir(Path(run_dir))
    run.require_trained()
    out = Path(out_path) if out_path is not None else onnx_path_for(run, checkpoint)
    started = time.time()
    reference_engine, meta = torch_engine(run, checkpoint)
    _export(reference_engine.model, meta, out, weights_sha256=_sha256(_weights_path(run, checkpoint)))
    export_seconds = time.time() - started

    pixels, source = _check_images(run, int(meta["img_size"]), n_check, jpeg_draft=bool(meta.get("jpeg_draft")))
    reference = Predictor(reference_engine, meta).probabilities(pixels)
    exported = Predictor(OnnxEngine.from_file(out), meta).probabilities(pixels)
    max_diff = float(np.abs(reference - exported).max())
    report = {"path": str(out), "checkpoint": checkpoint, "arch": meta["arch"], "img_size": int(meta["img_size"]),
              "checked_on": source, "n_checked": len(pixels), "max_abs_diff": max_diff,
              "same_top_class": float((reference.argmax(1) == exported.argmax(1)).mean()),
              "export_seconds": round(export_seconds, 2), "size_bytes": out.stat().st_size}
    if not max_diff <= MAX_PROB_DIFF:  # also catches NaN
        out.unlink(missing_ok=True)
        raise NeunnError(f"ONNX Runtime disagrees with PyTorch on {source} (largest probability difference "
                         f"{max_diff:.2e} > {MAX_PROB_DIFF:g}); the export was removed.")
    return report
