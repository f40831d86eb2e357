"""Run the review station with uvicorn: ``neunn serve`` calls :func:`serve_run`.

    serve_run("runs/b7", host="127.0.0.1", port=8000, backend="onnx", token=os.environ.get("NEUNN_TOKEN"))

Loopback is the default. With the case store (the default) reviewers log in; with ``--ephemeral`` serving on any
other address shows patients' cells to the network, so it needs a token.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from neunn.cases.database import open_store
from neunn.cases.lis_delivery import parse_targets
from neunn.cases.users import list_users
from neunn.errors import NeunnError
from neunn.evaluation.metric_results import MetricResults
from neunn.inference.predictor import Predictor
from neunn.log import say
from neunn.rundir import RunDir
from neunn.serve.app import create_app
from neunn.serve.limits import ServeLimits


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bound_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas: with one arena per worker thread (FastAPI answers database calls from a pool of
    threads) the server's memory grew by ~100 MB over 3,000 case requests, without a leak; two arenas keep it flat
    (benchmarks/serve_load.py --mode cases, docs/serving.md). Elsewhere than glibc this does nothing."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _require_free_port(host: str, port: int) -> None:
    """Fail early, in one sentence, when the address cannot be bound (before loading a model for nothing)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise NeunnError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port "
                             "or --host.") from None


def run_model_info(run_dir: str | Path) -> dict[str, Any]:
    """Facts about a run for ``GET /api/v1/model``: its name and, when evaluated, its test metrics."""
    run = RunDir(Path(run_dir))
    info: dict[str, Any] = {"run": run.root.resolve().name}
    metrics_file = run.evaluation("test").metrics
    try:
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    except (OSError, ValueError):
        metrics = None
    try:
        results = MetricResults.from_json(metrics) if metrics else None
    except (KeyError, TypeError, AttributeError):  # not a metrics.json NeuNN wrote: no test metrics to show
        results = None
    if results is not None:
        overall = results.overall
        info["test_metrics"] = {"n": results.n, "accuracy": overall.accuracy,
                                "macro_sensitivity": overall.macro.sensitivity, "macro_f1": overall.macro.f1,
                                "ece": overall.ece}
    if metrics:
        info["synthetic_data"] = bool(metrics.get("synthetic_data"))
    return info


def serve_run(run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, backend: str = "torch",
              token: str | None = None, checkpoint: str = "best", device: str = "cpu",
              limits: ServeLimits | None = None, review_threshold: float | None = None,
              critical: str | None = None, store: tuple[Path | None, str | None] | None = (None, None),
              lis_targets: Sequence[str] = ()) -> None:
    """Load a run's model and serve the review page and API until interrupted.

    ``store`` is (store folder, database URL) of the case store, None for each default; ``store=None`` keeps nothing
    (``--ephemeral``), and then ``token`` guards the API. ``review_threshold`` and ``critical`` override the model's
    decision policy; the page and the API show the one in force. ``lis_targets``: folders and FHIR endpoints that signed
    cases' results are delivered to (see neunn.cases.lis_delivery)."""
    import uvicorn  # imported here: only serving needs it

    if token is not None and not token.strip():
        raise NeunnError("The token is empty; pass a non-empty --token or unset NEUNN_TOKEN.")
    if store is None and not is_loopback(host) and token is None:
        raise NeunnError(f"Serving on {host} exposes patients' cells to the network; set a token with --token "
                         "or the NEUNN_TOKEN environment variable.")
    if lis_targets and store is None:
        raise NeunnError("LIS targets receive signed cases, and --ephemeral keeps none: drop one of them.")
    for target in parse_targets(lis_targets):
        if target.kind == "folder":
            try:
                Path(target.where).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NeunnError(f"Cannot make the LIS folder {target.where} ({exc.strerror or exc}).") from None
    if not 0 < port < 65536:
        raise NeunnError(f"Port must be between 1 and 65535, got {port}.")
    _require_free_port(host, port)
    _bound_malloc_arenas()
    if backend.startswith("onnx"):
        # ONNX Runtime runs the network on its own threads; PyTorch only reshapes a few images per request, and waking
        # its thread pool for that costs milliseconds on a busy CPU. (Grad-CAM heatmaps then run on one thread.)
        torch.set_num_threads(1)
    cases = open_store(store[0], db_url=store[1]) if store is not None else None
    if cases is not None:
        with cases.transaction() as db:
            if not list_users(db):
                raise NeunnError(f"The case store {cases.describe()} has no users yet; add one with "
                                 "`neunn users add NAME --role admin` (same --store/--db), or serve --ephemeral.")
    predictor = Predictor.from_run(run_dir, checkpoint=checkpoint, backend=backend, device=device,
                                   review_threshold=review_threshold, critical=critical)
    app = create_app(predictor, store=cases, token=token, limits=limits, model_info=run_model_info(run_dir),
                     lis_targets=lis_targets)
    shown = f"[{host}]" if ":" in host else host
    policy = predictor.policy
    say(f"NeuNN review station for {run_dir} ({predictor.meta.get('arch')}, backend {backend}) on "
        f"http://{shown}:{port}/" + ("#token=<your token>" if token else ""))
    say(f"review threshold {policy.review_threshold:g}, critical classes "
        f"{', '.join(policy.critical_classes) or 'none'} ({'set here' if policy.source == 'override' else 'the model default'})")
    if cases is None:
        say("--ephemeral: uploads stay in memory; nothing is written to disk. Stop with Ctrl+C.")
    else:
        say(f"cases kept in {cases.describe()}; reviewers log in at /login. Stop with Ctrl+C.")
        for target in parse_targets(lis_targets):
            say(f"signed cases are delivered to {target.name} for the LIS "
                + ("(FHIR R4 and HL7 v2.5 files)" if target.kind == "folder" else "(FHIR R4 by POST)")
                + "; retried until delivered")
        if not is_loopback(host):
            say("serving beyond this machine: put it behind a TLS reverse proxy (docs/serving.md) so passwords and "
                "session cookies never cross the network in clear.")
    # An open case page holds one connection (its live updates): a stop waits for them at most 10 s (every decision is
    # committed before it is answered, so nothing is lost), and 64 connections serve a laboratory's reviewers.
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False, timeout_keep_alive=5,
                limit_concurrency=64, proxy_headers=True, timeout_graceful_shutdown=10)
