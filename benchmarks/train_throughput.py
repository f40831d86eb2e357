"""End-to-end ``neunn train`` throughput against model-only throughput, same model, resolution and batch (for a GPU).

    python benchmarks/train_throughput.py DATA_DIR --preset neunn-b7 --batch-size 64 --epochs 3 [--compile]

Model-only: eager, and compiled too with --compile; random tensors already on the device, bf16 autocast and
channels_last on CUDA, steps of the AdamW that neunn train uses; no data loading, EMA or gradient clipping.
End-to-end: a real ``neunn train`` run on DATA_DIR (decoded set in memory, augmentation on the device); its images/s is
read from log.jsonl, skipping the first epoch (warm-up, compilation). The ratio says whether data handling is the limit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from neunn.training.config import resolve_config
from neunn.model import classifier_for_config
from neunn.runtime import autocast_dtype, resolve_device, use_fast_gpu_kernels
from neunn.training.setup import open_training_run
from neunn.training.train import create_optimizer, train


def model_only(cfg, steps: int, n_classes: int, *, compiled: bool) -> float:
    device = resolve_device(cfg.device)
    use_fast_gpu_kernels(device)  # as neunn train does
    dtype = autocast_dtype(cfg.precision, device)
    model = classifier_for_config(cfg, n_classes).to(device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compiled else model
    opt = create_optimizer(model, cfg)  # the optimizer neunn train uses
    x = torch.randn(cfg.batch_size, 3, cfg.img_size, cfg.img_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (cfg.batch_size,), device=device)
    amp = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()

    def step():
        with amp:
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--preset", default="neunn-b7")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="model-only timed steps")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], metavar="key=value")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    overrides = [f"batch_size={args.batch_size}", f"epochs={args.epochs}", f"compile={args.compile}",
                 "eval_every=1000", *args.set]
    cfg = resolve_config(preset=args.preset, overrides=overrides)
    n_classes = sum(1 for p in args.data.iterdir() if p.is_dir() and not p.name.startswith("."))
    eager_ips = model_only(cfg, args.steps, n_classes, compiled=False)
    print(f"model-only, eager: {eager_ips:.1f} images/s", flush=True)  # printed as measured: a cut-off run keeps them
    model_ips = model_only(cfg, args.steps, n_classes, compiled=True) if cfg.compile else eager_ips
    if cfg.compile:
        print(f"model-only, compiled: {model_ips:.1f} images/s", flush=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        train(open_training_run(args.data, Path(tmp) / "run", cfg=cfg, progress=False))
        log = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    steady = [r["images_per_s"] for r in log[1:]] or [log[0]["images_per_s"]]
    e2e = sum(steady) / len(steady)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    result = {"device": device, "torch": torch.__version__, "model": cfg.model, "img_size": cfg.img_size,
              "batch_size": cfg.batch_size, "compile": cfg.compile, "model_only_eager_images_per_s": eager_ips, "model_only_images_per_s": model_ips,
              "neunn_train_images_per_s": e2e, "ratio": e2e / model_ips, "epochs_images_per_s": [r["images_per_s"] for r in log],
              "train_peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
