"""Command-line flags that adjust a :class:`RunConfig`, shared by every training command."""
from __future__ import annotations

import argparse
from typing import Any, Dict, Tuple

from mtl_ehrnet.training.pose_loss import PUSH_KINDS
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


def add_augmentation_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for the :class:`mtl_ehrnet.data.TrainTransform` options (HigherHRNet's values when unset)."""
    parser.add_argument(
        "--scale-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="random zoom: source window / short side (HigherHRNet: 0.75 1.5)",
    )
    parser.add_argument("--max-rotation", type=float, metavar="DEG", help="random rotation in +-DEG (HigherHRNet: 30)")
    parser.add_argument(
        "--max-translate", type=float, metavar="FRAC", help="random shift, fraction of the window (0.2)"
    )
    parser.add_argument("--sigma", type=float, help="pose: heatmap Gaussian sigma in map pixels (2)")


def add_ground_truth_flags(parser: argparse.ArgumentParser, ae_weight: float = 1e-3, ae_push: str = "exp") -> None:
    """Flags of the ground-truth loss (:func:`mtl_ehrnet.training.task_loss.ground_truth_loss`); ``ae_weight``
    and ``ae_push`` are their defaults (HigherHRNet's unless a command has its own)."""
    parser.add_argument(
        "--ae-weight",
        type=float,
        default=ae_weight,
        help="weight of the associative-embedding pull and push terms (default %(default)s; HigherHRNet: 1e-3)",
    )
    parser.add_argument(
        "--ae-push",
        choices=PUSH_KINDS,
        default=ae_push,
        help="push term (default %(default)s): exp(-d^2) (HigherHRNet's COCO setting) or max(0, 1-|d|), "
        "which also pushes equal tags apart (exp has no gradient there, and short runs keep the "
        "initial equal tags)",
    )
    parser.add_argument(
        "--class-weights",
        choices=("none", "median"),
        default="none",
        help="segmentation: cross-entropy class weights; median = median-frequency balancing of the training labels",
    )
    parser.add_argument(
        "--ohem", type=float, metavar="THRESH", help="segmentation: OHEM cross-entropy threshold (HRNet: 0.7)"
    )


def ground_truth_options(args: argparse.Namespace) -> Dict[str, Any]:
    """``ae_weight``, ``ae_push``, ``class_weights`` and ``ohem`` as :func:`add_ground_truth_flags` parsed them."""
    return {
        "ae_weight": args.ae_weight,
        "ae_push": args.ae_push,
        "class_weights": args.class_weights,
        "ohem": args.ohem,
    }


def augmentation_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The TrainTransform options the user set on the command line."""
    options = {name: getattr(args, name, None) for name in ("scale_range", "max_rotation", "max_translate", "sigma")}
    return {
        name: tuple(value) if isinstance(value, list) else value for name, value in options.items() if value is not None
    }
