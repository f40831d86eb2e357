"""Which engine scores a run: the one place a backend name (``neunn.BACKENDS``) becomes an engine.

    engine = create_engine(RunDir(Path("runs/b7")), checkpoint="best", backend="onnx-int8", device="cpu")

``torch`` runs the PyTorch model on any device; ``onnx`` and ``onnx-int8`` run ONNX Runtime on the CPU, exporting
(or quantizing) RUN_DIR/export/<checkpoint>.onnx first when it is missing or older than the checkpoint.
"""

from __future__ import annotations

from neunn import BACKENDS
from neunn.errors import NeunnError
from neunn.inference.engines import LogitsEngine, load_torch_engine
from neunn.inference.export import open_onnx_engine
from neunn.inference.int8 import open_int8_engine
from neunn.rundir import RunDir


def create_engine(run: RunDir, *, checkpoint: str = "best", backend: str = "torch", device: str = "cpu",
                  threads: int = 0) -> LogitsEngine:
    """The scoring engine of a run's checkpoint for a backend; ``device`` applies to torch, ``threads`` to ONNX."""
    if backend == "torch":
        return load_torch_engine(run, checkpoint, device=device)
    if backend == "onnx":
        return open_onnx_engine(run, checkpoint, threads=threads)
    if backend == "onnx-int8":
        return open_int8_engine(run, checkpoint, threads=threads)
    raise NeunnError(f"Unknown backend '{backend}'; use {', '.join(BACKENDS)}.")
