"""Helpers shared by the subcommand modules of the command line."""

from __future__ import annotations

import argparse


def add_command(name: str, sub, help: str, example: str, func) -> argparse.ArgumentParser:
    """Add a subcommand whose --help ends with an example, and which runs ``func(args)``."""
    p = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def add_overrides(p: argparse.ArgumentParser, what: str = "config", example: str = "epochs=30 lr=0.002") -> None:
    """The one way every command takes config overrides: ``key=value`` arguments, anywhere after the command."""
    p.add_argument("overrides", nargs="*", metavar="key=value", help=f"{what} overrides, e.g. {example}")


def add_policy(p: argparse.ArgumentParser) -> None:
    """``--review-threshold`` and ``--critical``: a lab's own decision policy over the model's default."""
    p.add_argument("--review-threshold", type=float, metavar="P",
                   help="cells whose calibrated confidence is under P go to review (default: the model's)")
    p.add_argument("--critical", metavar="CLASS[,CLASS]",
                   help="classes that raise a critical alert, e.g. GBI,BAC or vacuolated; 'none' for none "
                        "(default: the model's)")
