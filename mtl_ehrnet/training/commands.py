"""``mtl-ehrnet train-backbone``: pretrain a compact EfficientNet classifier (thesis 4.1) as a backbone."""
from __future__ import annotations

import argparse
from pathlib import Path

from mtl_ehrnet.config_tree import write_tree
from mtl_ehrnet.training.backbone_config import BackboneConfig
from mtl_ehrnet.training.run_flags import add_config_flags, config_from_args

# Everyday flags and the config key each sets; every other setting is reached with --set or the YAML.
FLAG_KEYS = {
    "data": "data.root",
    "phi": "phi",
    "epochs": "run.epochs",
    "batch_size": "run.batch_size",
    "lr": "run.lr",
    "device": "run.device",
    "workers": "run.workers",
}


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "train-backbone",
        help="pretrain efficientnet_b<phi> on ImageFolder or CIFAR-100 data as a pose/seg backbone",
        description="Train the compact EfficientNet classifier B(phi) with the thesis 4.1 recipe (SGD, wd 1e-4, "
        "5 warm-up epochs to lr 0.05, x0.1 every 30 epochs; random rotation/crop/scale/aspect, colour jitter, "
        "PCA lighting), validating top-1/top-5 per epoch. OUT/best.pt initialises pose_h<phi>, seg_h<phi>, "
        "mtl_h<phi> (train-teacher --set init.backbone_weights=OUT/best.pt). Writes OUT/config.yaml (--config "
        "OUT/config.yaml trains the same run again); docs/training.md lists every key.",
    )
    add_config_flags(p, "--set data.input_size=96 --set lite=true", flat_run=True)
    p.add_argument("--data", metavar="DIR",
                   help="ImageFolder root (DIR/train/<class>/<image>, optional DIR/val) or a CIFAR-100 python layout "
                        "(DIR/cifar-100-python/{train,test,meta})")
    p.add_argument("--phi", type=int, help="scaling coefficient: 0 (B0), -1 ... -4 (compact), or any integer")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--epochs", type=int, help="epochs including the warm-up (default: the thesis's 5 + 195)")
    p.add_argument("--batch-size", type=int, help="images per step per process (default 64)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.05)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    p.set_defaults(func=run)


def backbone_config(args: argparse.Namespace) -> BackboneConfig:
    """The run's settings: the thesis recipe, the ``--config`` YAML over it, then the flags typed (``--set`` last).
    A flat YAML of RunConfig fields is read as the ``run`` section."""
    config = config_from_args(BackboneConfig, args, FLAG_KEYS, flat_run=True)
    config.check_complete()
    return config.resolved()


def run(args: argparse.Namespace) -> int:
    from mtl_ehrnet.training.backbone_pretrain import train_backbone

    config = backbone_config(args)
    path = write_tree(Path(args.out) / "config.yaml", config)
    result = train_backbone(
        config.data.root,
        config.phi,
        args.out,
        input_size=config.data.input_size,
        lite=config.lite,
        crop_scale=config.data.crop_scale,
        resume=args.resume,
        run=config.run_config(),
    )
    print(f"last checkpoint: {result.last_checkpoint} (settings: {path})")
    if result.history:
        final = result.history[-1]
        print(
            f"validation after epoch {final['epoch']}: top-1 {100 * final['top1']:.2f} %, "
            f"top-5 {100 * final['top5']:.2f} % ({int(final['samples'])} images)"
        )
    if result.best_checkpoint is not None:
        print(f"best checkpoint: {result.best_checkpoint} (top-1 {100 * result.best_value:.2f} %)")
    return 0
