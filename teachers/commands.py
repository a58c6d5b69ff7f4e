"""``mtl-ehrnet train-teacher``: train a standalone pose or segmentation teacher."""
from __future__ import annotations

import argparse

from mtl_ehrnet.training.run_flags import (
    add_augmentation_flags,
    add_ground_truth_flags,
    add_run_flags,
    augmentation_options,
    ground_truth_options,
    layered_run_changes,
)


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "train-teacher",
        help="train a single-task pose or segmentation teacher on ground truth",
        description="Train a pose teacher on COCO keypoints or a segmentation teacher on Cityscapes with the "
        "thesis's recipe (pose: Adam 1e-3, steps at 2/3 and 13/15; seg: SGD 0.01 poly). Launch under "
        "torchrun for several processes.",
    )
    p.add_argument("task", choices=("pose", "seg"))
    p.add_argument(
        "--model",
        required=True,
        help="registered single-task model (pose_h-4, higherhrnet_w32, ...) or smp:ARCH:ENCODER",
    )
    p.add_argument("--coco", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"), help="pose training set")
    p.add_argument("--coco-val", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"), help="pose validation set (AP per epoch)")
    p.add_argument("--cityscapes", metavar="ROOT", help="Cityscapes root (train split; validates on val)")
    p.add_argument("--input-size", type=int, help="training crop side (default: the model's native size)")
    p.add_argument("--epochs", type=int, help="epochs (default: the --config file's, else 300)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    p.add_argument("--config", metavar="YAML", help="run config file (every RunConfig field); flags below override it")
    add_ground_truth_flags(p)
    p.add_argument(
        "--backbone-weights",
        metavar="PATH",
        help="initialise the backbone from a local file: a train-backbone checkpoint (efficientnet_b<phi> of the "
        "model's phi), a torchvision efficientnet classifier state dict, or any of our checkpoints",
    )
    p.add_argument(
        "--init-weights",
        metavar="PATH",
        help="start every weight from a checkpoint of this model: ours, or a published one that "
        "'mtl-ehrnet convert' reads (EfficientHRNet, HigherHRNet, HRNet-seg), to fine-tune it",
    )
    add_augmentation_flags(p)
    add_run_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from teachers.train import train

    if (args.task == "pose") != (args.coco is not None) or (args.task == "seg") != (args.cityscapes is not None):
        raise ValueError(
            "train-teacher pose needs --coco ANN_FILE IMAGE_DIR; train-teacher seg needs --cityscapes ROOT"
        )
    # The task's recipe, under the --config file's fields, under the flags typed.
    epochs, changes = layered_run_changes(args, default_epochs=300)
    result = train(
        args.task,
        args.model,
        args.out,
        coco=args.coco,
        coco_val=args.coco_val,
        cityscapes=args.cityscapes,
        input_size=args.input_size,
        epochs=epochs,
        resume=args.resume,
        backbone_weights=args.backbone_weights,
        init_weights=args.init_weights,
        augmentation=augmentation_options(args),
        **ground_truth_options(args),
        **changes,
    )
    print(f"last checkpoint: {result.last_checkpoint}")
    if result.best_checkpoint is not None:
        print(f"best checkpoint: {result.best_checkpoint} ({result.best_value:.4f})")
    return 0
