"""``neunn predict`` throughput on this CPU: eager PyTorch, ONNX Runtime, and a raw ONNX Runtime session on pre-decoded
tensors (the ceiling: no decoding, no resizing), side by side in one run.

    python benchmarks/predict_throughput.py RUN_DIR IMAGE_DIR --limit 512

The ratio "predict onnx / raw session" says how much decoding and preprocessing cost; "onnx / eager" what ONNX buys.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from neunn.predict import iter_input_files
from neunn.predictor import Predictor


def predict_rate(run: Path, files: list[Path], backend: str, batch_size: int, workers: int) -> float:
    predictor = Predictor.from_run(run, backend=backend)
    list(predictor.predict_files(files[:batch_size], batch_size=batch_size, workers=workers))  # warm-up
    start = time.perf_counter()
    n = sum(1 for p in predictor.predict_files(files, batch_size=batch_size, workers=workers) if p.error is None)
    return n / (time.perf_counter() - start)


def raw_session_rate(run: Path, files: list[Path], batch_size: int) -> float:
    predictor = Predictor.from_run(run, backend="onnx")
    pixels = torch.stack([predictor.load_pixels(f) for f in files])
    predictor.engine.logits(pixels[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        predictor.engine.logits(pixels[i : i + batch_size])
    return len(pixels) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--limit", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    files = list(iter_input_files([args.images]))[: args.limit]
    rates = {
        "eager_torch": predict_rate(args.run, files, "torch", args.batch_size, args.workers),
        "onnx": predict_rate(args.run, files, "onnx", args.batch_size, args.workers),
        "raw_onnx_session": raw_session_rate(args.run, files, args.batch_size),
    }
    result = {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
              "images": len(files), "images_per_s": rates,
              "onnx_over_raw": rates["onnx"] / rates["raw_onnx_session"],
              "onnx_over_eager": rates["onnx"] / rates["eager_torch"]}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
