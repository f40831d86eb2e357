"""Serving subcommands: ``neunn serve`` (review page + HTTP API) and ``neunn export`` (ONNX with a check)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from neunn import BACKENDS
from neunn.cli.common import add_command, add_policy, add_store, port_number
from neunn.errors import NeunnError


def _check_run_and_policy(args: argparse.Namespace) -> None:
    """The run to serve, and --critical/--review-threshold against its classes, checked before the case store is
    opened: a mistyped run or class is named as such, not as a store without users."""
    from neunn.checkpoint import read_checkpoint_meta
    from neunn.inference.policy import DecisionPolicy
    from neunn.rundir import RunDir

    run = RunDir(args.run_dir)
    run.require_trained()
    meta = read_checkpoint_meta(run.checkpoint(args.checkpoint))
    DecisionPolicy.of_model(meta).overridden(review_threshold=args.review_threshold, critical=args.critical,
                                             classes=meta["classes"])


def _cmd_serve(args: argparse.Namespace) -> int:
    from neunn.serve import serve_run

    _check_run_and_policy(args)
    token = args.token if args.token is not None else (os.environ.get("NEUNN_TOKEN") or None)
    if not args.ephemeral:
        if args.token is not None:
            raise NeunnError("--token is for --ephemeral serving only; with the case store, reviewers log in "
                             "(add them with `neunn users add`).")
        token = None
    elif args.store is not None or args.db is not None:
        raise NeunnError("--ephemeral keeps nothing: drop --store and --db, or drop --ephemeral.")
    lis_targets = [*(str(f) for f in args.lis_folder), *args.lis_url]
    if args.ephemeral and lis_targets:
        raise NeunnError("--lis-folder writes signed cases (and --lis-url sends them), and --ephemeral keeps none: "
                         "drop one of them.")
    serve_run(args.run_dir, host=args.host, port=args.port, backend=args.backend, token=token,
              checkpoint=args.checkpoint, device=args.device, review_threshold=args.review_threshold,
              critical=args.critical, store=None if args.ephemeral else (args.store, args.db or os.environ.get("NEUNN_DB")),
              lis_targets=lis_targets)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from neunn.inference.export import export_onnx

    if args.int8:
        return _export_int8(args)
    report = export_onnx(args.run_dir, args.onnx, checkpoint=args.checkpoint)
    print(f"exported {report['arch']} ({report['img_size']} px) to {report['path']} "
          f"({report['size_bytes'] / 1e6:.1f} MB) in {report['export_seconds']:.1f} s")
    print(f"ONNX Runtime vs PyTorch on {report['checked_on']}: largest probability difference "
          f"{report['max_abs_diff']:.2e}, same top class for {100 * report['same_top_class']:.0f}%")
    return 0


def _export_int8(args: argparse.Namespace) -> int:
    from neunn.inference.int8 import write_int8_model
    from neunn.rundir import RunDir

    if args.onnx is not None:
        raise NeunnError("--int8 writes RUN_DIR/export/<checkpoint>.int8.onnx, the file --backend onnx-int8 uses; "
                         "drop --onnx.")
    run = RunDir(args.run_dir)
    run.require_trained()
    report = write_int8_model(run, args.checkpoint)
    print(f"quantized {report['arch']} ({report['img_size']} px) to {report['path']} "
          f"({report['size_bytes'] / 1e6:.1f} MB) in {report['seconds']:.1f} s, calibrated on {report['calibrated_on']}")
    print(f"int8 vs float32 on {report['checked_on']}: same top class for {100 * report['same_top_class']:.1f}%")
    return 0


def add_parsers(sub) -> None:
    """Register ``serve`` and ``export`` on the top-level subparsers."""
    p = add_command("serve", sub, "serve the review page and HTTP API for a trained run (127.0.0.1 by default)",
                    "neunn users add dr.ruiz --role admin && neunn serve runs/b7 --backend onnx", _cmd_serve)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs a token")
    p.add_argument("--port", type=port_number, default=8000)
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    add_store(p)
    p.add_argument("--ephemeral", action="store_true",
                   help="keep nothing (no cases, no logins): the one-sample page; --token then guards the API")
    p.add_argument("--token", help="with --ephemeral: require 'Authorization: Bearer TOKEN' on the API "
                                   "(default: $NEUNN_TOKEN)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu", help="torch backend only: cpu, cuda, mps, auto")
    p.add_argument("--lis-folder", type=Path, metavar="DIR", action="append", default=[],
                   help="on signing a case (and amending a signed one), write its FHIR bundle and HL7 v2 message "
                        "into DIR (<sample>.fhir.json, <sample>.hl7, each atomically) for the LIS to pick up; "
                        "retried until written (repeatable)")
    p.add_argument("--lis-url", metavar="URL", action="append", default=[],
                   help="on signing a case (and amending a signed one), POST its FHIR R4 bundle to this endpoint; "
                        "retried until it answers 2xx, never lost (repeatable)")
    add_policy(p)

    p = add_command("export", sub, "export a run's model to ONNX and check ONNX Runtime against PyTorch",
                    "neunn export runs/b7 --onnx b7.onnx", _cmd_export)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--onnx", type=Path, help="output file (default: RUN_DIR/export/<checkpoint>.onnx, "
                                              "the one --backend onnx uses)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--int8", action="store_true", help="quantize to int8 instead (calibrated on the run's training "
                                                       "images, checked against float32): the --backend onnx-int8 model")
