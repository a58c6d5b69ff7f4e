"""Command-line flags that adjust a :class:`RunConfig`, shared by every training command."""
from __future__ import annotations

import argparse
from typing import Any, Dict

# (flag, type, help); each maps to the RunConfig field of the same name.
RUN_FLAGS = (
    ("--batch-size", int, "images per step per process"),
    ("--lr", float, "learning rate"),
    ("--workers", int, "DataLoader worker processes"),
    ("--seed", int, "seed of initialisation, data order and augmentation"),
    ("--checkpoint-every", int, "also write last.pt every N steps"),
    ("--val-every", int, "validate every N epochs (0: never)"),
    ("--steps-per-epoch", int, "cap on steps per epoch"),
    ("--grad-clip", float, "max gradient norm"),
    ("--device", str, "auto, cpu, cuda, cuda:1 ..."),
)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the RunConfig flags (all optional: unset flags keep the recipe's value)."""
    for flag, kind, text in RUN_FLAGS:
        parser.add_argument(flag, type=kind, help=text)


def run_changes(args: argparse.Namespace) -> Dict[str, Any]:
    """The RunConfig fields the user set on the command line."""
    names = (flag[2:].replace("-", "_") for flag, _, _ in RUN_FLAGS)
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
