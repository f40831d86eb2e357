"""Helpers shared by the subcommand modules of the command line."""

from __future__ import annotations

import argparse
from pathlib import Path


INTERRUPTED = "interrupted"  # what Ctrl-C prints for a command that says nothing else about it


def add_command(name: str, sub, help: str, example: str, func, *,
                interrupted: str = INTERRUPTED) -> argparse.ArgumentParser:
    """Add a subcommand whose --help ends with an example, and which runs ``func(args)``.

    ``help`` is plain text (a "95 %" stays as is); ``interrupted`` is the line Ctrl-C prints, e.g. how to continue.
    """
    # argparse %-formats the help shown in the parent's list of commands, but not the description.
    p = sub.add_parser(name, help=help.replace("%", "%%"), description=help, epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func, interrupted=interrupted)
    return p


def int_at_least(minimum: int):
    """An argparse type: a whole number of at least ``minimum``, else a one-sentence error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def fraction(*, open_low: bool = False):
    """An argparse type: a number in [0, 1] (in (0, 1] with ``open_low``), else a one-sentence error."""
    interval = "(0, 1]" if open_low else "[0, 1]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text!r}") from None
        if not (0.0 < value <= 1.0 if open_low else 0.0 <= value <= 1.0):
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {value:g}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse type: a number over 0, else a one-sentence error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be over 0, got {value:g}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535, else a one-sentence error."""
    value = int_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {value}")
    return value


def add_overrides(p: argparse.ArgumentParser, what: str = "config", example: str = "epochs=30 lr=0.002") -> None:
    """The one way every command takes config overrides: ``key=value`` arguments, anywhere after the command."""
    p.add_argument("overrides", nargs="*", metavar="key=value", help=f"{what} overrides, e.g. {example}")


def add_policy(p: argparse.ArgumentParser) -> None:
    """``--review-threshold`` and ``--critical``: a lab's own decision policy over the model's default."""
    p.add_argument("--review-threshold", type=fraction(), metavar="P",
                   help="cells whose calibrated confidence is under P go to review (default: the model's)")
    p.add_argument("--critical", metavar="CLASS[,CLASS]",
                   help="classes that raise a critical alert, e.g. GBI,BAC or vacuolated; 'none' for none "
                        "(default: the model's)")


def add_positive(p: argparse.ArgumentParser) -> None:
    """``--positive`` and ``--target-sensitivity``: figures for one rare class and its operating point."""
    p.add_argument("--positive", metavar="CLASS",
                   help="a rare class to report against the rest: ROC AUC, average precision, precision-recall curve "
                        "(default: the rarer class of a two-class model)")
    p.add_argument("--target-sensitivity", type=fraction(open_low=True), metavar="P",
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
