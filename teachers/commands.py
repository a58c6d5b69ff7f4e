"""``mtl-ehrnet train-teacher``: train a standalone pose or segmentation teacher."""
from __future__ import annotations

import argparse

from mtl_ehrnet.training import RunConfig


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "train-teacher",
        help="train a single-task pose or segmentation teacher on ground truth",
        description="Train a pose teacher on COCO keypoints or a segmentation teacher on Cityscapes with the "
        "thesis's recipe (pose: Adam 1e-3, steps at 2/3 and 13/15; seg: SGD 0.01 poly). Launch under "
        "torchrun for several processes.",
    )
    p.add_argument("task", choices=("pose", "seg"))
    p.add_argument("--model", required=True, help="registered single-task model (pose_h-4, higherhrnet_w32, ...) or smp:ARCH:ENCODER")
    p.add_argument("--coco", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"), help="pose training set")
    p.add_argument("--coco-val", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"), help="pose validation set (AP per epoch)")
    p.add_argument("--cityscapes", metavar="ROOT", help="Cityscapes root (train split; validates on val)")
    p.add_argument("--input-size", type=int, help="training crop side (default: the model's native size)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    p.add_argument("--config", metavar="YAML", help="run config file (every RunConfig field); flags below override it")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--workers", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int, help="also write last.pt every N steps")
    p.add_argument("--val-every", type=int, help="validate every N epochs (0: never)")
    p.add_argument("--steps-per-epoch", type=int, help="cap on steps per epoch")
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.set_defaults(func=run)


_FLAGS = ("batch_size", "lr", "workers", "seed", "checkpoint_every", "val_every", "steps_per_epoch", "grad_clip", "device")


def run(args: argparse.Namespace) -> int:
    from teachers.train import train

    if (args.task == "pose") != (args.coco is not None) or (args.task == "seg") != (args.cityscapes is not None):
        raise ValueError("train-teacher pose needs --coco ANN_FILE IMAGE_DIR; train-teacher seg needs --cityscapes ROOT")
    changes = {k: getattr(args, k) for k in _FLAGS if getattr(args, k) is not None}
    run_config = None
    if args.config:
        data = RunConfig.from_yaml(args.config).to_dict()
        data.update(changes, epochs=args.epochs)
        run_config = RunConfig.from_dict(data)
    result = train(
        args.task, args.model, args.out, coco=args.coco, coco_val=args.coco_val, cityscapes=args.cityscapes,
        input_size=args.input_size, epochs=args.epochs, resume=args.resume, run=run_config, **changes,
    )
    print(f"last checkpoint: {result.last_checkpoint}")
    if result.best_checkpoint is not None:
        print(f"best checkpoint: {result.best_checkpoint} ({result.best_value:.4f})")
    return 0
