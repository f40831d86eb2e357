"""Int8 ONNX model of a run, for the fastest CPU inference (``--backend onnx-int8``), checked against float32.

    report = write_int8_model(RunDir(Path("runs/b7")))     # RUN_DIR/export/best.int8.onnx
    report["same_top_class"]                                # share of validation cells whose class did not change

Static post-training quantization with ONNX Runtime: weights int8 per output channel, activations uint8 with ranges
calibrated on the run's own *training* images (never validation or test), in QDQ form. The first convolution (raw
stain colours) and the classifier head stay in float32: they hold few of the operations, and quantizing them changed
many more classes in an exploratory check. The int8 model is then scored against the float32 one on validation images and refused when too many cells
change class, so a silently degraded model is never served. Its file carries the same metadata and weights digest as
the float32 export (so a changed checkpoint is re-quantized), plus the agreement measured.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neunn.atomic import write_atomic
from neunn.data.preprocess import normalize_batch
from neunn.errors import NeunnError
from neunn.inference.export import current_engine, onnx_path_for, open_onnx_engine, split_images
from neunn.inference.onnx_engine import INT8_AGREEMENT_KEY, META_KEY, WEIGHTS_SHA_KEY, OnnxEngine
from neunn.log import say
from neunn.rundir import RunDir

# An int8 model that changes the class of more than this share of validation cells is refused.
MIN_AGREEMENT = 0.97
CALIBRATION_IMAGES = 256
CHECK_IMAGES = 256


def int8_path_for(run: RunDir, checkpoint: str = "best") -> Path:
    """Where ``--backend onnx-int8`` keeps the quantized model of a run's checkpoint."""
    return run.onnx_file(checkpoint, int8=True)


class _Batches:
    """ONNX Runtime's calibration reader over an N×3×S×S uint8 tensor, in normalised float batches."""

    def __init__(self, pixels: torch.Tensor, meta: dict[str, Any], input_name: str, batch: int = 32) -> None:
        self._batches = iter([{input_name: normalize_batch(pixels[i : i + batch], meta["mean"], meta["std"]).numpy()}
                              for i in range(0, len(pixels), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _float_nodes(model_path: Path) -> list[str]:
    """The nodes kept in float32: the first convolution and the last Gemm/MatMul (the classifier head)."""
    import onnx

    nodes = onnx.load(str(model_path)).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    return convs[:1] + heads[-1:]


def write_int8_model(run: RunDir, checkpoint: str = "best", *, min_agreement: float = MIN_AGREEMENT) -> dict[str, Any]:
    """Quantize the run's float32 ONNX model (exporting it first if needed), check it, write it; return a report."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    started = time.time()
    reference = open_onnx_engine(run, checkpoint)
    meta = reference.meta
    size = int(meta["img_size"])
    calibration, _ = split_images(run, "train", CALIBRATION_IMAGES, meta)
    if calibration is None:
        raise NeunnError(f"Int8 quantization calibrates on the run's training images, and the dataset "
                         f"{run.read_info().get('data_dir')} is not available; run it where the data is.")
    check, checked_on = split_images(run, "val", CHECK_IMAGES, meta)
    if check is None:
        check, checked_on = calibration, "the calibration images (the run has no validation images)"
    out = int8_path_for(run, checkpoint)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(onnx_path_for(run, checkpoint)), str(prepared))
        quantize_static(str(prepared), str(quantized), _Batches(calibration, meta, reference.input_name),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=_float_nodes(prepared))
        int8 = OnnxEngine.from_file(quantized)
        agreement = float((reference.logits(check).argmax(1) == int8.logits(check).argmax(1)).float().mean())
        if agreement < min_agreement:
            raise NeunnError(f"The int8 model changes the class of {100 * (1 - agreement):.1f}% of {checked_on} "
                             f"(at most {100 * (1 - min_agreement):.0f}% allowed); use --backend onnx for this run.")
        _stamp(quantized, meta, reference.weights_sha256, agreement)
        write_atomic(out, lambda target: Path(target).write_bytes(quantized.read_bytes()))
    return {"path": str(out), "checkpoint": checkpoint, "arch": meta["arch"], "img_size": size,
            "calibrated_on": f"{len(calibration)} training-split image(s)", "checked_on": checked_on,
            "n_checked": len(check), "same_top_class": agreement, "seconds": round(time.time() - started, 2),
            "size_bytes": out.stat().st_size}


def _stamp(path: Path, meta: dict[str, Any], weights_sha256: str | None, agreement: float) -> None:
    """Write NeuNN's metadata, the weights digest and the measured agreement into the quantized model file."""
    import onnx

    model = onnx.load(str(path))
    props = {META_KEY: json.dumps(meta, allow_nan=False), WEIGHTS_SHA_KEY: weights_sha256 or "",
             INT8_AGREEMENT_KEY: f"{agreement:.6f}"}
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def open_int8_engine(run: RunDir, checkpoint: str = "best", *, threads: int = 0) -> OnnxEngine:
    """The int8 engine of a run's checkpoint, quantized first when missing or older than the checkpoint's weights."""
    path = int8_path_for(run, checkpoint)
    engine = current_engine(path, run, checkpoint, threads=threads)
    if engine is None:
        say(f"int8 model {path} is missing or older than the checkpoint; quantizing it now")
        write_int8_model(run, checkpoint)
        engine = OnnxEngine.from_file(path, threads=threads)
    return engine
