"""``neunn adapt``: fine-tune a run on a few labelled cells per class of another laboratory, and score the rest."""

from __future__ import annotations

import argparse
from pathlib import Path

from neunn.cli.common import add_command, add_overrides, int_at_least


def _cmd_adapt(args: argparse.Namespace) -> int:
    from neunn.experiments.adapt import adapt_run, adapt_summary

    result = adapt_run(args.run_dir, args.data_dir, shots=args.shots, out=args.out, seed=args.seed,
                       overrides=args.overrides)
    print(adapt_summary(result))
    return 0


def add_parsers(sub) -> None:
    """Register ``adapt``."""
    p = add_command("adapt", sub, "fine-tune a run on K labelled cells per class of a new laboratory's "
                    "folder-per-class data, refit calibration and the out-of-domain threshold there, and score that "
                    "lab's other cells", "neunn adapt runs/pbc other_lab/ --shots 10 --out runs/pbc-other_lab",
                    _cmd_adapt)
    p.add_argument("run_dir", type=Path, help="the trained run to start from")
    p.add_argument("data_dir", type=Path, help="the new laboratory's cells, one folder per class")
    p.add_argument("--shots", type=int_at_least(2), required=True, metavar="K",
                   help="labelled cells per class to adapt on")
    p.add_argument("--out", type=Path, required=True, help="the adapted run's folder (new)")
    p.add_argument("--seed", type=int, default=0, help="which K cells per class are drawn")
    add_overrides(p, "training config (over the source run's)", "epochs=40 lr=0.001")
