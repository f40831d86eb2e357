"""ONNX export of a run's model, checked against PyTorch on the run's own test images.

    report = export_onnx("runs/b7", "b7.onnx")     # export, then check ONNX Runtime against PyTorch on real test images
    report["max_abs_diff"]                         # largest |p_onnx - p_torch| over the checked images' probabilities

Where ``--backend onnx`` keeps the model: ``RUN_DIR/export/<checkpoint>.onnx``, exported on first use when missing.
The file carries the checkpoint's metadata and the SHA-256 of the weights it was exported from, so a model exported
before the checkpoint changed (a resumed run, a new calibration) is noticed and exported again, never served stale.
The graph has two outputs, ``logits`` and ``features`` (penultimate, for the out-of-domain score); a file exported
before the features existed is exported again on first use.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from neunn.atomic import write_atomic
from neunn.data.image_io import UnreadableImage
from neunn.data.preprocess import load_pixels
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.inference.engines import load_torch_engine
from neunn.inference.forward import WithFeatures
from neunn.inference.onnx_engine import META_KEY, WEIGHTS_SHA_KEY, OnnxEngine, file_sha256
from neunn.log import say
from neunn.rundir import RunDir

# Probabilities of ONNX Runtime and PyTorch agree to ~1e-6 in float32; anything near this bound is a broken export.
MAX_PROB_DIFF = 1e-3


def onnx_path_for(run: RunDir, checkpoint: str = "best") -> Path:
    """Where ``--backend onnx`` keeps the exported model of a run's checkpoint."""
    return run.onnx_file(checkpoint)


def weights_sha256(run: RunDir, checkpoint: str = "best") -> str:
    """SHA-256 of a checkpoint's weights file: what an exported model records, and is checked against."""
    return file_sha256(run.checkpoint(checkpoint).with_suffix(".safetensors"))


def write_onnx_model(run: RunDir, out: Path, *, checkpoint: str = "best") -> Path:
    """Export a run's checkpoint to ``out`` (atomically), with the checkpoint's metadata embedded; no check."""
    engine = load_torch_engine(run, checkpoint)
    _export(engine.model, engine.meta, Path(out), weights_sha256=weights_sha256(run, checkpoint))
    return Path(out)


def current_engine(path: Path, run: RunDir, checkpoint: str, *, threads: int = 0) -> OnnxEngine | None:
    """The engine of the model file at ``path`` when it exists and was made from the checkpoint's current weights."""
    if not path.is_file():
        return None
    engine = OnnxEngine.from_file(path, threads=threads)
    return engine if engine.weights_sha256 == weights_sha256(run, checkpoint) else None


def open_onnx_engine(run: RunDir, checkpoint: str = "best", *, threads: int = 0) -> OnnxEngine:
    """The float32 ONNX engine of a run's checkpoint, exported first when missing or older than its weights."""
    path = onnx_path_for(run, checkpoint)
    engine = current_engine(path, run, checkpoint, threads=threads)
    if engine is None or not engine.has_features:  # a file from before the features output: cheap to redo
        say(f"ONNX model {path} is missing or older than the checkpoint; exporting it now")
        write_onnx_model(run, path, checkpoint=checkpoint)
        engine = OnnxEngine.from_file(path, threads=threads)
    return engine


def _export(model: torch.nn.Module, meta: dict[str, Any], out: Path, *, weights_sha256: str) -> None:
    size = int(meta["img_size"])
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        program = torch.onnx.export(WithFeatures(model).eval(), (example,), None, input_names=["pixels"],
                                    output_names=["logits", "features"], dynamo=True, external_data=False,
                                    dynamic_shapes=({0: batch},), verbose=False)
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


def split_images(run: RunDir, split: str, n: int, meta: dict[str, Any]) -> tuple[torch.Tensor | None, str]:
    """Up to ``n`` images of one of the run's splits (classes taken in turn), prepared as the checkpoint ``meta`` says,
    or None when the data is gone."""
    size, draft, crop = int(meta["img_size"]), bool(meta.get("jpeg_draft")), float(meta.get("crop", 1.0))
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
            pixels.append(load_pixels(Path(data_dir) / entry.path, size, jpeg_draft=draft, crop=crop))
        except UnreadableImage:
            continue
    if not pixels:
        return None, f"no {split}-split image"
    return torch.stack(pixels), f"{len(pixels)} {split}-split image(s) of {data_dir}"


def _check_images(run: RunDir, n: int, meta: dict[str, Any]) -> tuple[torch.Tensor, str]:
    """Up to ``n`` decoded test-split images, or random pixels when the data is gone."""
    pixels, source = split_images(run, "test", n, meta)
    img_size = int(meta["img_size"])
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
    reference = load_torch_engine(run, checkpoint)
    meta = reference.meta
    _export(reference.model, meta, out, weights_sha256=weights_sha256(run, checkpoint))
    export_seconds = time.time() - started

    pixels, source = _check_images(run, n_check, meta)
    # Softmax of both engines' logits: the temperature divides both alike, so it cannot hide a difference.
    expected = torch.softmax(reference.logits(pixels), dim=1).numpy()
    exported = torch.softmax(OnnxEngine.from_file(out).logits(pixels), dim=1).numpy()
    max_diff = float(abs(expected - exported).max())
    report = {"path": str(out), "checkpoint": checkpoint, "arch": meta["arch"], "img_size": int(meta["img_size"]),
              "checked_on": source, "n_checked": len(pixels), "max_abs_diff": max_diff,
              "same_top_class": float((expected.argmax(1) == exported.argmax(1)).mean()),
              "export_seconds": round(export_seconds, 2), "size_bytes": out.stat().st_size}
    if not max_diff <= MAX_PROB_DIFF:  # also catches NaN
        out.unlink(missing_ok=True)
        raise NeunnError(f"ONNX Runtime disagrees with PyTorch on {source} (largest probability difference "
                         f"{max_diff:.2e} > {MAX_PROB_DIFF:g}); the export was removed.")
    return report
