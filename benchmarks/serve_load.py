"""Bounded load test of the review station on loopback: N concurrent clients, M requests each, then it stops.

Starts ``neunn serve RUN_DIR`` on a free 127.0.0.1 port in a subprocess and reports throughput, p50/p90/p99 latency,
every unexpected answer or failure, and the server's resident memory after a warm-up and at the end (growth would
mean a leak: uploads must not pile up). Cells are real pbc-dev neutrophils when /work/shared/data/pbc-dev is present,
else phantom cells rendered in memory.

``--mode predict`` (``--ephemeral`` server): ``--clients`` threads, each with its own keep-alive connection, send
``--requests`` one-cell ``POST /api/v1/predict`` requests each.

``--mode cases`` (a case store in a temporary folder, or ``--db`` PostgreSQL): ``--clients`` named reviewers, each
logged in with their own bearer token, each ``--requests`` times: open a case, upload ``--cells`` cells in one
request, then for every cell reload the case (as the page does) and save a decision, read the audit trail, and
sign. Every answer must be the expected one (no 409 either: each reviewer works on their own cases).

    PYTHONPATH=src python benchmarks/serve_load.py RUN_DIR --backend onnx --clients 8 --requests 200
    PYTHONPATH=src python benchmarks/serve_load.py RUN_DIR --backend onnx --mode cases --clients 8 --requests 5

Exit status 1 when any request failed or memory grew by more than --max-growth-mb.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
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


PASSWORD = "load-test-password"


def _reviewer(url: str, cells: list[bytes], k: int, n: int, latencies: list[float], failures: list[str],
              by_route: dict[str, list[float]]) -> None:
    """One reviewer's work: n cases, each opened, filled, reviewed cell by cell and signed."""
    with httpx.Client(base_url=url, timeout=120) as client:
        token = client.post("/api/v1/token", data={"username": f"reviewer{k}", "password": PASSWORD})
        if token.status_code != 200:
            failures.append(f"login HTTP {token.status_code}: {token.text[:120]}")
            return
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

        def call(route: str, method: str, path: str, expect: int = 200, **kwargs) -> dict | None:
            start = time.perf_counter()
            try:
                answer = client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                failures.append(f"{route}: {exc.__class__.__name__}: {exc}")
                return None
            elapsed = (time.perf_counter() - start) * 1000
            if answer.status_code != expect:
                failures.append(f"{route}: HTTP {answer.status_code}: {answer.text[:120]}")
                return None
            latencies.append(elapsed)
            by_route[route].append(elapsed)
            return answer.json()

        for round_ in range(n):
            case = call("create case", "POST", "/api/v1/cases", 201,
                        json={"sample_id": f"load-{os.getpid()}-{k}-{round_}-{time.time_ns()}"})
            if case is None:
                continue
            base = f"/api/v1/cases/{case['id']}"
            upload = call("upload cells", "POST", f"{base}/cells",
                          files=[("files", (f"cell{i}.jpg", data, "image/jpeg")) for i, data in enumerate(cells)])
            if upload is None:
                continue
            for cell in upload["cells"]:
                if call("reload case", "GET", base) is None:
                    break
                classes = list(cell["probabilities"])
                label = classes[(cell["position"] + k) % len(classes)]
                call("decide", "PUT", f"{base}/cells/{cell['id']}/decision",
                     json={"label": label, "version": cell["version"]})
            call("audit", "GET", f"{base}/audit")
            call("sign", "POST", f"{base}/signature")


def _wave(url: str, cells: list[bytes], clients: int, requests: int, *, mode: str = "predict",
          by_route: dict[str, list[float]] | None = None) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    failures: list[str] = []
    if mode == "cases":
        threads = [threading.Thread(target=_reviewer, args=(url, cells, k, requests, latencies, failures,
                                                             by_route if by_route is not None else defaultdict(list)))
                   for k in range(clients)]
    else:
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
    parser.add_argument("--mode", default="predict", choices=("predict", "cases"))
    parser.add_argument("--cells", type=int, default=20, help="cases mode: cells uploaded per case")
    parser.add_argument("--db", help="cases mode: a PostgreSQL URL (default: SQLite in a temporary store)")
    args = parser.parse_args()

    cells, source = _cells(args.cells if args.mode == "cases" else 32)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    store = tempfile.TemporaryDirectory(prefix="neunn-load-store-")
    if args.mode == "cases":
        serving = ["--store", store.name, *(["--db", args.db] if args.db else [])]
        for k in range(args.clients):
            subprocess.run([sys.executable, "-m", "neunn", "users", "add", f"reviewer{k}", *serving],
                           input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        env = dict(os.environ)
    else:
        serving, env = ["--ephemeral"], {**os.environ, "NEUNN_TOKEN": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "neunn", "serve", str(args.run_dir), "--host", "127.0.0.1",
                               "--port", str(port), "--backend", args.backend, *serving],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    by_route: dict[str, list[float]] = defaultdict(list)
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
        warmup = args.warmup if args.mode == "predict" else 1
        _wave(url, cells, args.clients, warmup, mode=args.mode)
        rss_start = _rss_mb(server.pid)
        latencies, failures, seconds = _wave(url, cells, args.clients, args.requests, mode=args.mode,
                                             by_route=by_route)
        rss_end = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(20)
        store.cleanup()

    ordered = sorted(latencies)

    def pick(q: float, values: list[float] = ordered) -> float | None:
        """The q-quantile by nearest rank (rounded up: a p99 of few values is their maximum, not below it)."""
        values = sorted(values)
        return round(values[min(len(values) - 1, math.ceil(q * (len(values) - 1)))], 1) if values else None

    report = {
        "mode": args.mode, "database": ("postgresql" if args.db else "sqlite") if args.mode == "cases" else None,
        "backend": args.backend, "cells": source, "clients": args.clients, "requests_per_client": args.requests,
        "requests": args.clients * args.requests, "ok": len(latencies), "failures": len(failures),
        "seconds": round(seconds, 2), "throughput_rps": round(len(latencies) / seconds, 1),
        "latency_ms": {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
                       "mean": round(statistics.fmean(ordered), 1) if ordered else None},
        "server_rss_mb": {"after_warmup": round(rss_start, 1), "at_end": round(rss_end, 1),
                          "growth": round(rss_end - rss_start, 1)},
        "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if args.mode == "cases":
        report["requests"] = len(latencies) + len(failures)
        report["requests_per_client"] = f"{args.requests} cases of {args.cells} cells"
        report["latency_ms_by_route"] = {
            route: {"n": len(ms), "p50": pick(0.5, ms), "p99": pick(0.99, ms)} for route, ms in by_route.items()}
    print(json.dumps(report, indent=1))
    for failure in failures[:5]:
        print("failure:", failure, file=sys.stderr)
    return 1 if failures or rss_end - rss_start > args.max_growth_mb else 0


if __name__ == "__main__":
    sys.exit(main())
