"""Pallor subcommands: ``neunn pallor fit RUN --finding CLASS`` gives a run a pallor screen for a finding that pales the
cytoplasm (vacuoles); ``neunn pallor remove RUN`` takes it away."""

from __future__ import annotations

import argparse
from pathlib import Path

from neunn.cli.common import add_command


def _cmd_pallor_fit(args: argparse.Namespace) -> int:
    from neunn.training.pallor_fit import fit_pallor_screen

    screen = fit_pallor_screen(args.run_dir, finding=args.finding, target_sensitivity=args.target_sensitivity,
                               workers=args.workers)
    fitted = screen.fitted_on
    print(f"pallor screen for '{screen.finding}': threshold {screen.threshold:.4f}, chosen on {fitted['n']} training "
          f"and validation cells ({fitted['n_positive']} {screen.finding}), where it flagged "
          f"{fitted['sensitivity']:.0%} of them and passed {fitted['specificity']:.0%} of the others; cells at or over "
          f"it that the model does not call '{screen.finding}' go to review")
    return 0


def _cmd_pallor_remove(args: argparse.Namespace) -> int:
    from neunn.inference.pallor_screen import remove_pallor_screen
    from neunn.rundir import RunDir

    print(f"pallor screen of {args.run_dir} removed" if remove_pallor_screen(RunDir(args.run_dir))
          else f"{args.run_dir} has no pallor screen")
    return 0


def add_parsers(sub) -> None:
    """Register ``pallor fit`` and ``pallor remove``."""
    pallor = sub.add_parser("pallor", help="a pallor screen: pale-cytoplasm cells the model did not call the finding "
                                           "go to review")
    pallor_sub = pallor.add_subparsers(dest="pallor_command", required=True, metavar="COMMAND")
    p = add_command("fit", pallor_sub, "choose a run's pallor threshold for a target sensitivity on its own training "
                    "and validation cells", "neunn pallor fit runs/vacuoles --finding vacuolated", _cmd_pallor_fit)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--finding", required=True, metavar="CLASS", help="the class whose cells have a pale cytoplasm")
    p.add_argument("--target-sensitivity", type=float, default=0.9, metavar="P",
                   help="share of the finding's cells the threshold flags on those cells (default 0.9)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="threads measuring cells side by side (2)")
    p = add_command("remove", pallor_sub, "remove a run's pallor screen", "neunn pallor remove runs/vacuoles",
                    _cmd_pallor_remove)
    p.add_argument("run_dir", type=Path)
