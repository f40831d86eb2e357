"""Memory of ``neunn predict`` over a very large folder: resident memory sampled while it streams N files.

    python benchmarks/predict_memory.py RUN_DIR IMAGE_DIR --count 100000 --backend onnx-int8 [--json out.json]

Builds a folder of N symbolic links (outside the repository, in --scratch) that cycle through the images of IMAGE_DIR,
runs ``neunn predict`` on it in a subprocess, samples that process's resident memory (VmRSS) every 0.5 s, and
reports it at 1/10, 1/2 and the end of the run and its peak: flat memory means the rows stream out and nothing grows
with the number of files (the sorted list of paths itself is the only per-file cost).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from neunn.inference.predict_files import iter_input_files


def _rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _link_farm(images: Path, count: int, scratch: Path) -> Path:
    sources = list(iter_input_files([images]))
    farm = scratch / f"predict-memory-{count}"
    if farm.is_dir() and sum(1 for _ in farm.rglob("*.jpg")) == count:
        return farm
    shutil.rmtree(farm, ignore_errors=True)
    for i in range(count):
        folder = farm / f"{i // 1000:04d}"  # 1,000 per folder, like an analyser's export of many smears
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"cell_{i:06d}.jpg").symlink_to(sources[i % len(sources)].resolve())
    return farm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--backend", default="onnx-int8")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    farm = _link_farm(args.images, args.count, args.scratch)
    out = args.scratch / f"predict-memory-{args.count}.csv"
    command = [sys.executable, "-m", "neunn", "predict", str(args.run), str(farm), "--out", str(out),
               "--backend", args.backend]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []  # (seconds, RSS MiB)
    while process.poll() is None:
        rss = _rss_mib(process.pid)
        if rss is not None:
            samples.append((time.perf_counter() - start, rss))
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"neunn predict failed: {process.stderr.read()[-2000:]}")
    rows = sum(1 for _ in out.open()) - 1

    def rss_at(share: float) -> float:
        return next(rss for t, rss in samples if t >= share * seconds)

    result = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "backend": args.backend,
              "files": args.count, "rows": rows, "seconds": round(seconds, 1),
              "images_per_s": round(rows / seconds, 1), "rss_mib_at_10pct": round(rss_at(0.1), 1),
              "rss_mib_at_50pct": round(rss_at(0.5), 1), "rss_mib_at_end": round(samples[-1][1], 1),
              "peak_rss_mib": round(max(rss for _, rss in samples), 1), "command": " ".join(command)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
