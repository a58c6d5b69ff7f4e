"""Command-line flags that adjust a :class:`RunConfig`, shared by every training command."""
from __future__ import annotations

import argparse
from typing import Any, Dict, Tuple

from mtl_ehrnet.training.run_config import AMP_MODES, RunConfig

# (flag, type, help); each maps to the RunConfig field of the same name.
RUN_FLAGS = (
    ("--batch-size", int, "images per step per process"),
    ("--optimizer", str, "adam, adamw or sgd (default: the recipe's)"),
    ("--lr", float, "learning rate"),
    ("--schedule", str, "step, poly or constant (default: the recipe's)"),
    ("--workers", int, "DataLoader worker processes"),
    ("--seed", int, "seed of initialisation, data order and augmentation"),
    ("--checkpoint-every", int, "also write last.pt every N steps"),
    ("--val-every", int, "validate every N epochs (0: never)"),
    ("--steps-per-epoch", int, "cap on steps per epoch"),
    ("--grad-clip", float, "max gradient norm"),
    ("--ema-decay", float, "validate and save an exponential moving average of the weights (e.g. 0.999)"),
    ("--device", str, "auto, cpu, cuda, cuda:1 ..."),
    ("--log-every", int, "log the mean of the loss terms every N steps"),
)
# Switches without a value; unset keeps the recipe's setting.
RUN_SWITCHES = (
    ("--channels-last", "NHWC model and images (--no-channels-last: NCHW)"),
    ("--sync-bn", "under torchrun, batch-norm statistics over every rank's batch (CUDA; --no-sync-bn: per rank)"),
)


def config_override(text: str) -> Tuple[str, Any]:
    """``--set KEY=VALUE``: the key (dotted: ``kd.temperature``) and VALUE read as YAML (``2``, ``[1, 0.01]``,
    ``null``, ``kl``)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the RunConfig flags (all optional: unset flags keep the recipe's value)."""
    for flag, kind, text in RUN_FLAGS:
        parser.add_argument(flag, type=kind, help=text)
    parser.add_argument("--amp", choices=AMP_MODES,
                        help="mixed precision: fp16 (autocast with a gradient scaler, CUDA only), bf16 (autocast "
                             "bfloat16, no scaler; CUDA or CPU) or off (default: fp16)")
    for flag, text in RUN_SWITCHES:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
    parser.add_argument(
        "--milestones",
        type=float,
        nargs="+",
        metavar="EPOCH",
        help="epochs after which the step schedule multiplies the lr by 0.1 (pose recipe: 2/3 and 13/15 of --epochs)",
    )


def run_changes(args: argparse.Namespace) -> Dict[str, Any]:
    """The RunConfig fields the user set on the command line."""
    flags = [flag for flag, _, _ in RUN_FLAGS] + [flag for flag, _ in RUN_SWITCHES] + ["--amp", "--milestones"]
    names = [flag[2:].replace("-", "_") for flag in flags]
    changes = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if "milestones" in changes:
        changes["milestones"] = tuple(changes["milestones"])
    return changes


def layered_run_changes(args: argparse.Namespace, default_epochs: int) -> Tuple[int, Dict[str, Any]]:
    """A command's epochs and RunConfig changes, layered: the ``--config`` YAML's fields over the recipe (which
    the caller applies them to), then the flags the user typed (``--epochs`` among them) over the YAML."""
    from_yaml = RunConfig.read_yaml(args.config) if getattr(args, "config", None) else {}
    yaml_epochs = from_yaml.pop("epochs", None)
    epochs = args.epochs if args.epochs is not None else yaml_epochs if yaml_epochs is not None else default_epochs
    return epochs, {**from_yaml, **run_changes(args)}
