"""The ``neunn`` command: a thin argparse layer, each subcommand parsing its arguments and calling one library function.

Subcommands live in one module per area (``core``, ...), each exposing ``add_parsers(sub)``. User errors (NeunnError)
are printed as one sentence without a traceback, with exit status 2; bad option values are refused by argparse (exit
status 2) before anything runs. Ctrl-C prints what interrupting the command means (``add_command(interrupted=...)``:
how to continue a training run, ...) and exits with status 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from neunn import __version__
from neunn.cli.common import INTERRUPTED
from neunn.errors import NeunnError

# Each module registers its own subcommands; add a module here to add commands.
_COMMAND_MODULES = ("core", "serve", "cases", "gan", "experiments", "screen", "adapt")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar."""
    parser = argparse.ArgumentParser(prog="neunn", description="NeuNN: neutrophil cytoplasm abnormality recognition.",
                                     epilog="example:\n  neunn demo", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"neunn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"neunn.cli.{name}").add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``neunn`` console script."""
    parser = build_parser()
    # key=value overrides may follow options (``train DATA --out RUN epochs=3``), which argparse alone refuses; every
    # command that takes overrides takes them this one way.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return args.func(args)
    except NeunnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", INTERRUPTED), file=sys.stderr)
        return 130
