"""The ``mtl-ehrnet`` command line.

The core package owns the parser; subcommands come from the entry-point group
``mtl_ehrnet.commands``, which each package (``evaluation``, ``teachers``, ``distill`` and this one)
fills in ``setup.py``. An entry point names a function ``register(subparsers)`` that adds its
subparser and sets ``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an
exit code.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import Optional, Sequence

COMMAND_GROUP = "mtl_ehrnet.commands"


def build_parser() -> argparse.ArgumentParser:
    """Builds the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="mtl-ehrnet",
        description="EfficientHRNet: joint pose estimation and segmentation, distilled from teachers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        register = entry.load()
        register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one subcommand; returns its exit code (2 for usage errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as err:
        # Bad user input is reported in one line, not as a traceback.
        print(f"mtl-ehrnet {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
