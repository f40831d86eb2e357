"""Bounded load test of the review station on loopback: N concurrent clients, M requests each, then it stops.

Starts ``neunn serve RUN_DIR`` on a free 127.0.0.1 port in a subprocess, sends one-cell ``POST /api/v1/predict``
requests from ``--clients`` threads (each with its own keep-alive connection, ``--requests`` each), and reports
throughput, p50/p90/p99 latency, every non-200 answer or failure, and the server's resident memory after a warm-up
and at the end (growth would mean a leak: uploads must not pile up). Cells are real pbc-dev neutrophils when
/work/shared/data/pbc-dev is present, else phantom cells rendered in memory.

    PYTHONPATH=src python benchmarks/serve_load.py RUN_DIR --backend onnx --clients 8 --requests 200

Exit status 1 when any request failed or memory grew by more than --max-growth-mb.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from neunn import NEUTROPHIL_CLASSES
from neunn.data.phantom import cell_seed, render_cell

PBC_DEV = Path("/work/shared/data/pbc-dev")
TOKEN = "load-test-token"


def _cells(n: int) -> tuple[list[bytes], str]:
    real = sorted((PBC_DEV / "neutrophil").glob("*.jpg"))[:n] if PBC_DEV.is_dir() else []
    if real:
        return [p.read_bytes() for p in real], f"{len(real)} pbc-dev neutrophil JPEGs (360x363)"
    out = []
    for i in range(n):
        label = NEUTROPHIL_CLASSES[i % len(NEUTROPHIL_CLASSES)]
        buffer = io.BytesIO()
        Image.fromarray(render_cell(label, cell_seed(label, i), 360)).save(buffer, format="JPEG", quality=92)
        out.append(buffer.getvalue())
    return out, f"{n} phantom cells rendered at 360 px (pbc-dev absent)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _client(url: str, cells: list[bytes], offset: int, n: int, latencies: list[float], failures: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for i in range(n):
            data = cells[(offset + i) % len(cells)]
            start = time.perf_counter()
            try:
                answer = client.post("/api/v1/predict", files=[("files", (f"cell{i}.jpg", data, "image/jpeg"))])
                ok = answer.status_code == 200 and answer.json()["results"][0]["status"] == 200
                if not ok:
                    failures.append(f"HTTP {answer.status_code}: {answer.text[:120]}")
            except httpx.HTTPError as exc:
                failures.append(f"{exc.__class__.__name__}: {exc}")
                continue
            latencies.append((time.perf_counter() - start) * 1000)


def _wave(url: str, cells: list[bytes], clients: int, requests: int) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    failures: list[str] = []
    threads = [threading.Thread(target=_client, args=(url, cells, k * 7, requests, latencies, failures))
               for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--backend", default="onnx", choices=("torch", "onnx"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--warmup", type=int, default=20, help="requests per client before measuring")
    parser.add_argument("--max-growth-mb", type=float, default=25.0)
    args = parser.parse_args()

    cells, source = _cells(32)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "neunn", "serve", str(args.run_dir), "--host", "127.0.0.1",
                               "--port", str(port), "--backend", args.backend],
                              env={**os.environ, "NEUNN_TOKEN": TOKEN},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(server.stderr.read().decode()[-2000:], file=sys.stderr)
                return 1
            time.sleep(0.2)
        _wave(url, cells, args.clients, args.warmup)
        rss_start = _rss_mb(server.pid)
        latencies, failures, seconds = _wave(url, cells, args.clients, args.requests)
        rss_end = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(20)

    ordered = sorted(latencies)

    def pick(q: float) -> float | None:
        return round(ordered[int(q * (len(ordered) - 1))], 1) if ordered else None

    report = {
        "backend": args.backend, "cells": source, "clients": args.clients, "requests_per_client": args.requests,
        "requests": args.clients * args.requests, "ok": len(latencies), "failures": len(failures),
        "seconds": round(seconds, 2), "throughput_rps": round(len(latencies) / seconds, 1),
        "latency_ms": {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
                       "mean": round(statistics.fmean(ordered), 1) if ordered else None},
        "server_rss_mb": {"after_warmup": round(rss_start, 1), "at_end": round(rss_end, 1),
                          "growth": round(rss_end - rss_start, 1)},
        "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=1))
    for failure in failures[:5]:
        print("failure:", failure, file=sys.stderr)
    return 1 if failures or rss_end - rss_start > args.max_growth_mb else 0


if __name__ == "__main__":
    sys.exit(main())
