"""``neunn predict`` throughput on this CPU: eager PyTorch, ONNX Runtime (float32 and int8), and raw ONNX Runtime
sessions on pre-decoded tensors (the ceilings: no decoding, no resizing), side by side in one run.

    python benchmarks/predict_throughput.py RUN_DIR [IMAGE_DIR] --limit 512 [--json out.json]

Without IMAGE_DIR the files are the run's own test split. "predict onnx / raw session" says how much decoding and
preprocessing cost; "onnx / eager" what ONNX buys. Each backend's labels are also compared with eager PyTorch's on the
same files ("same class"), and with the class folder each file sits in ("accuracy": on the test split, test accuracy).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import onnxruntime
import torch

from neunn.data.split import load_split
from neunn.inference.predict_files import iter_input_files
from neunn.inference.predictor import Predictor
from neunn.rundir import RunDir

BACKENDS = ("torch", "onnx", "onnx-int8")


def predict_rate(run: Path, files: list[Path], backend: str, batch_size: int, workers: int) -> tuple[float, list]:
    predictor = Predictor.from_run(run, backend=backend)
    list(predictor.predict_files(files[:batch_size], batch_size=batch_size, workers=workers))  # warm-up
    start = time.perf_counter()
    labels = [p.label for p in predictor.predict_files(files, batch_size=batch_size, workers=workers)]
    return sum(lb is not None for lb in labels) / (time.perf_counter() - start), labels


def raw_session_rate(run: Path, files: list[Path], backend: str, batch_size: int) -> float:
    predictor = Predictor.from_run(run, backend=backend)
    pixels = torch.stack([predictor.load_pixels(f) for f in files])
    predictor.engine.logits(pixels[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        predictor.engine.logits(pixels[i : i + batch_size])
    return len(pixels) / (time.perf_counter() - start)


def _test_split_files(run: Path) -> list[Path]:
    data_dir = Path(RunDir(run).read_info()["data_dir"])
    return [data_dir / e.path for e in load_split(RunDir(run).splits).splits["test"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("images", type=Path, nargs="?", help="default: the run's test split")
    parser.add_argument("--limit", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    all_files = list(iter_input_files([args.images])) if args.images else _test_split_files(args.run)
    files = all_files[:: max(1, len(all_files) // args.limit)][: args.limit]  # spread over every class folder
    rates, labels = {}, {}
    for backend in BACKENDS:
        rates[backend], labels[backend] = predict_rate(args.run, files, backend, args.batch_size, args.workers)
    for backend in ("onnx", "onnx-int8"):
        rates[f"raw_{backend}_session"] = raw_session_rate(args.run, files, backend, args.batch_size)
    truth = [f.parent.name for f in files]
    result = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "torch_threads": torch.get_num_threads(),
              "images": len(files), "images_per_s": rates,
              "onnx_over_raw": rates["onnx"] / rates["raw_onnx_session"],
              "onnx_over_eager": rates["onnx"] / rates["torch"],
              "int8_over_raw_int8": rates["onnx-int8"] / rates["raw_onnx-int8_session"],
              "int8_over_eager": rates["onnx-int8"] / rates["torch"],
              "same_class_as_torch": {b: sum(a == t for a, t in zip(labels[b], labels["torch"])) / len(files)
                                      for b in BACKENDS},
              "accuracy_vs_folder": {b: sum(a == t for a, t in zip(labels[b], truth)) / len(files) for b in BACKENDS}}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
