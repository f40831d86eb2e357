"""Latency of one cell through the Predictor, ONNX Runtime against PyTorch, on the CPU: the review station's target.

The target (issue 5) is one 360x363 cell in under 50 ms p50 on 2 CPU cores with the cpu-small preset (resnet10t at
128 px) through ONNX. Each timed call is what the server does for a one-cell request: decode the image bytes with the
one loader, resize, normalise, run the network, apply the temperature and softmax (``predict_sources``). The network
alone is timed as well. Weights do not change the arithmetic, so any cpu-small run will do (e.g. ``neunn demo``'s).

    PYTHONPATH=src python benchmarks/onnx_latency.py RUN_DIR --threads 2 --iterations 300
    PYTHONPATH=src python benchmarks/onnx_latency.py RUN_DIR --image /work/shared/data/pbc-dev/neutrophil/x.jpg

Without --image it takes the first neutrophil of /work/shared/data/pbc-dev (a real 360x363 JPEG) and says so and exits
when that folder is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import onnxruntime
import torch

from neunn.data.image_io import load_rgb
from neunn.inference.engines import load_torch_engine
from neunn.inference.export import open_onnx_engine
from neunn.inference.predictor import Predictor
from neunn.rundir import RunDir

PBC_DEV = Path("/work/shared/data/pbc-dev")


def _interleaved_timings(calls: dict, iterations: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call for each named (torch threads, call), taking turns so all see the same machine load."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + iterations):
        for name, (threads, call) in calls.items():
            torch.set_num_threads(threads)
            start = time.perf_counter()
            call()
            if i >= warmup:
                out[name].append((time.perf_counter() - start) * 1000)
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"p50_ms": round(statistics.median(ordered), 2), "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2), "mean_ms": round(statistics.fmean(ordered), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--image", type=Path, help="one cell image (default: the first pbc-dev neutrophil)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of ONNX Runtime and of the torch backend")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()

    image = args.image
    if image is None:
        candidates = sorted((PBC_DEV / "neutrophil").glob("*.jpg")) if PBC_DEV.is_dir() else []
        if not candidates:
            print(f"skipped: no --image given and {PBC_DEV} is absent", file=sys.stderr)
            return 0
        image = candidates[0]
    data = image.read_bytes()
    size = load_rgb(data).image.size
    run = RunDir(args.run_dir)
    engines = {"onnx": open_onnx_engine(run, threads=args.threads), "torch": load_torch_engine(run)}
    meta = engines["torch"].meta

    pixels = torch.zeros((1, 3, meta["img_size"], meta["img_size"]), dtype=torch.uint8)
    calls = {}
    for name, engine in engines.items():
        # As `neunn serve` runs them: with ONNX Runtime doing the network, PyTorch only reshapes one image, on 1 thread.
        threads = 1 if name == "onnx" else args.threads
        predictor = Predictor(engine)
        assert predictor.predict_sources([("cell", data)])[0].error is None
        calls[f"{name} one cell end to end"] = (threads, lambda p=predictor: p.predict_sources([("cell", data)]))
        calls[f"{name} network only"] = (threads, lambda e=engine: e.logits(pixels))
    load_before = os.getloadavg()[0]
    timings = _interleaved_timings(calls, args.iterations, args.warmup)
    results = {"image": str(image), "image_size": list(size), "arch": meta["arch"], "img_size": meta["img_size"],
               "threads": args.threads, "cpus": os.cpu_count(), "iterations": args.iterations,
               "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
               "torch_version": torch.__version__, "onnxruntime_version": onnxruntime.__version__,
               **{name: _stats(ms) for name, ms in timings.items()}}
    print(json.dumps(results, indent=1))
    p50 = results["onnx one cell end to end"]["p50_ms"]
    print(f"ONNX one cell ({size[0]}x{size[1]}, {meta['arch']} at {meta['img_size']} px, {args.threads} threads): "
          f"p50 {p50} ms — target < 50 ms: {'met' if p50 < 50 else 'NOT met'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
