"""Data-pipeline throughput and memory on this machine's CPU: decoding into the in-memory set, and batch augmentation.

    python benchmarks/data_pipeline.py ../shared/data/pbc-dev --sizes 128 224 360 --counts 1000 5000 20000

For each resolution: images/s decoding real JPEGs into the uint8 set (the one-off cost of a run), images/s of the batch
augmentation (the per-step cost), and the set's memory. Counts beyond the dataset's size reuse its files, which measures
how time and memory grow with the number of images.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from neunn.training.augment import augment_batch
from neunn.data.decoded import decode_images
from neunn.data.scan import scan_dataset


def measure(root: Path, records, size: int, count: int, workers: int) -> dict:
    entries = [records[i % len(records)] for i in range(count)]
    classes = sorted({r.label for r in records})
    start = time.perf_counter()
    images = decode_images(root, entries, classes, size=size, jpeg_draft=True, workers=workers)
    decode_s = time.perf_counter() - start
    batch = images.pixels[:64]
    gen = torch.Generator().manual_seed(0)
    augment_batch(batch, gen, affine=0.1, color=0.1)  # warm-up
    start, reps = time.perf_counter(), 5
    for _ in range(reps):
        augment_batch(batch, gen, affine=0.1, color=0.1)
    augment_s = (time.perf_counter() - start) / reps
    return {"size": size, "count": count, "decode_images_per_s": count / decode_s,
            "augment_images_per_s": len(batch) / augment_s, "set_mib": images.pixels.numel() / 2**20,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224, 360])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    records = scan_dataset(args.data).images
    print(f"CPU {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {args.workers} decode workers")
    print(f"{'px':>5}{'images':>8}{'decode img/s':>14}{'augment img/s':>15}{'set MiB':>9}{'peak RSS MiB':>14}")
    rows = []
    for size in args.sizes:
        for count in args.counts:
            r = measure(args.data, records, size, count, args.workers)
            rows.append(r)
            print(f"{size:>5}{count:>8}{r['decode_images_per_s']:>14.0f}{r['augment_images_per_s']:>15.0f}"
                  f"{r['set_mib']:>9.0f}{r['peak_rss_mib']:>14.0f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
