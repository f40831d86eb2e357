"""Out-of-domain subcommands: ``neunn ood fit RUN`` gives an existing run the out-of-domain flag without retraining."""

from __future__ import annotations

import argparse
from pathlib import Path

from neunn.cli.common import add_command


def _cmd_ood_fit(args: argparse.Namespace) -> int:
    from neunn.training.out_of_domain import fit_run_out_of_domain

    options = {k: v for k, v in (("method", args.method), ("quantile", args.quantile)) if v is not None}
    report = fit_run_out_of_domain(args.run_dir, checkpoint=args.checkpoint, device=args.device, **options)
    print(f"out-of-domain score ({report['method']}) fitted on {report['n_fit']} training cells; threshold "
          f"{report['threshold']:.4g} flags about {1 - report['quantile']:.0%} of in-domain cells; written to "
          f"{report['path']}")
    return 0


def _cmd_ood_gate(args: argparse.Namespace) -> int:
    from neunn.errors import NeunnError
    from neunn.inference.scope_gate import remove_gate, set_gate

    if args.remove:
        if args.gate_run or args.scope:
            raise NeunnError("--remove takes the run only.")
        print(f"cell-type gate of {args.run_dir} removed" if remove_gate(args.run_dir)
              else f"{args.run_dir} has no cell-type gate")
        return 0
    if not args.gate_run or not args.scope:
        raise NeunnError("Give the gate run and --scope CLASS[,CLASS] (the gate classes this run is for), or --remove.")
    record = set_gate(args.run_dir, args.gate_run, scope=args.scope.split(","))
    print(f"cell-type gate set: cells that {record['run']} calls anything but {', '.join(record['scope'])} are "
          f"flagged out of domain by {args.run_dir} (predict, evaluate, serve)")
    return 0


def add_parsers(sub) -> None:
    """Register ``ood fit`` and ``ood gate``."""
    ood = sub.add_parser("ood", help="the out-of-domain flag: cells unlike any the model was trained on")
    ood_sub = ood.add_subparsers(dest="ood_command", required=True, metavar="COMMAND")
    p = add_command("fit", ood_sub, "fit (or refit) a run's out-of-domain score on its own training and validation "
                    "splits, without retraining", "neunn ood fit runs/b7", _cmd_ood_fit)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--method", help="mahalanobis (default), knn, energy or max_logit")
    p.add_argument("--quantile", type=float,
                   help="share of validation cells under the threshold (default 0.95: about 5%% of in-domain cells "
                        "flagged)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu")

    p = add_command("gate", ood_sub, "put a cell-type gate in front of a run of one cell type: cells the gate "
                    "calls another type are flagged out of domain", "neunn ood gate runs/vacuoles runs/pbc "
                    "--scope neutrophil", _cmd_ood_gate)
    p.add_argument("run_dir", type=Path)
    p.add_argument("gate_run", type=Path, nargs="?", help="a run trained on every cell type of the laboratory")
    p.add_argument("--scope", metavar="CLASS[,CLASS]", help="the gate's class(es) that this run is for")
    p.add_argument("--remove", action="store_true", help="remove the run's gate")
