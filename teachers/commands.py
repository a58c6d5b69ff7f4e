"""``mtl-ehrnet train-teacher``: train a standalone pose or segmentation teacher."""
from __future__ import annotations

import argparse
from pathlib import Path

from mtl_ehrnet.config_tree import write_tree
from mtl_ehrnet.training.run_flags import add_config_flags, config_from_args
from teachers.config import TASKS, TeacherConfig

# Everyday flags and the config key each sets; every other setting is reached with --set or the YAML.
FLAG_KEYS = {
    "task": "task",
    "model": "model",
    "coco": "data.coco",
    "coco_val": "data.coco_val",
    "cityscapes": "data.cityscapes",
    "init_weights": "init.weights",
    "epochs": "run.epochs",
    "batch_size": "run.batch_size",
    "lr": "run.lr",
    "device": "run.device",
    "workers": "run.workers",
}


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "train-teacher",
        help="train a single-task pose or segmentation teacher on ground truth",
        description="Train a pose teacher on COCO keypoints or a segmentation teacher on Cityscapes with the "
        "thesis's recipe (pose: Adam 1e-3, steps at 2/3 and 13/15; seg: SGD 0.01 poly). Launch under "
        "torchrun for several processes. Writes OUT/config.yaml (every setting; --config OUT/config.yaml trains "
        "the same run again). Settings: the recipe, then --config, then the flags typed here; docs/training.md "
        "lists every key.",
    )
    p.add_argument("task", choices=TASKS)
    add_config_flags(p, "--set loss.ae_push=max --set run.amp=bf16", flat_run=True)
    p.add_argument("--model", help="registered single-task model (pose_h-4, higherhrnet_w32, ...) or smp:ARCH:ENCODER")
    p.add_argument("--coco", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"), help="pose training set")
    p.add_argument("--coco-val", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"), help="pose validation set (AP per epoch)")
    p.add_argument("--cityscapes", metavar="ROOT", help="Cityscapes root (train split; validates on val)")
    p.add_argument("--init-weights", metavar="PATH",
                   help="start every weight from a checkpoint of this model: ours, or a published one that "
                   "'mtl-ehrnet convert' reads, to fine-tune it")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--epochs", type=int, help="default 300")
    p.add_argument("--batch-size", type=int, help="images per step per process")
    p.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    p.set_defaults(func=run)


def teacher_config(args: argparse.Namespace) -> TeacherConfig:
    """The run's settings: the recipe, the ``--config`` YAML over it, then the flags typed (``--set`` last). A
    flat YAML of RunConfig fields is read as the ``run`` section."""
    config = config_from_args(TeacherConfig, args, FLAG_KEYS, flat_run=True)
    config.check_complete()
    return config.resolved()


def run(args: argparse.Namespace) -> int:
    from teachers.train import train

    config = teacher_config(args)
    path = write_tree(Path(args.out) / "config.yaml", config)
    result = train(
        config.task,
        config.model,
        args.out,
        coco=config.data.coco,
        coco_val=config.data.coco_val,
        cityscapes=config.data.cityscapes,
        input_size=config.data.input_size,
        resume=args.resume,
        backbone_weights=config.init.backbone_weights,
        init_weights=config.init.weights,
        augmentation=config.data.augmentation.options(),
        run=config.run_config(),
        **config.loss.options(),
    )
    print(f"last checkpoint: {result.last_checkpoint} (settings: {path})")
    if result.best_checkpoint is not None:
        print(f"best checkpoint: {result.best_checkpoint} ({result.best_value:.4f})")
    return 0
