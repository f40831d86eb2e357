"""Helpers shared by the subcommand modules of the command line."""

from __future__ import annotations

import argparse
from pathlib import Path


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


def add_positive(p: argparse.ArgumentParser) -> None:
    """``--positive`` and ``--target-sensitivity``: figures for one rare class and its operating point."""
    p.add_argument("--positive", metavar="CLASS",
                   help="a rare class to report against the rest: ROC AUC, average precision, precision-recall curve "
                        "(default: the rarer class of a two-class model)")
    p.add_argument("--target-sensitivity", type=float, metavar="P",
                   help="choose the threshold on the validation split that reaches sensitivity P (e.g. 0.9) for the "
                        "positive class, and measure it on the evaluated cells")


def add_store(p: argparse.ArgumentParser) -> None:
    """``--store`` and ``--db``: where the review station keeps cases (the same two options on every command)."""
    p.add_argument("--store", type=Path, metavar="DIR",
                   help="the case store folder: the SQLite database and the uploaded images (default: $NEUNN_STORE, "
                        "else $XDG_DATA_HOME/neunn, else ~/.local/share/neunn)")
    p.add_argument("--db", metavar="URL", help="keep cases in this PostgreSQL database instead of SQLite, e.g. "
                                               "postgresql://neunn@dbhost/neunn (default: $NEUNN_DB); images stay "
                                               "in --store")
