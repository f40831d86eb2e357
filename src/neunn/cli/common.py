"""Helpers shared by the subcommand modules of the command line."""

from __future__ import annotations

import argparse


def add_command(name: str, sub, help: str, example: str, func) -> argparse.ArgumentParser:
    """Add a subcommand whose --help ends with an example, and which runs ``func(args)``."""
    p = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p
