"""``mtl-ehrnet train-backbone``: pretrain a compact EfficientNet classifier (thesis 4.1) as a backbone."""
from __future__ import annotations

import argparse

from mtl_ehrnet.training.run_flags import add_run_flags, layered_run_changes


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "train-backbone",
        help="pretrain efficientnet_b<phi> on ImageFolder or CIFAR-100 data as a pose/seg backbone",
        description="Train the compact EfficientNet classifier B(phi) with the thesis 4.1 recipe (SGD, wd 1e-4, "
        "5 warm-up epochs to lr 0.05, x0.1 every 30 epochs; random rotation/crop/scale/aspect, colour jitter, "
        "PCA lighting), validating top-1/top-5 per epoch. OUT/best.pt initialises pose_h<phi>, seg_h<phi>, "
        "mtl_h<phi> (create_model(..., backbone_weights=...) or train-teacher --backbone-weights).",
    )
    p.add_argument("--data", required=True, metavar="DIR",
                   help="ImageFolder root (DIR/train/<class>/<image>, optional DIR/val) or a CIFAR-100 python layout "
                        "(DIR/cifar-100-python/{train,test,meta})")
    p.add_argument(
        "--phi", type=int, required=True, help="scaling coefficient: 0 (B0), -1 ... -4 (compact), or any integer"
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--epochs", type=int,
                   help="epochs including the warm-up (default: the --config file's, else the thesis's 5 + 195)")
    p.add_argument("--input-size", type=int, help="training side (default: Table 4.1's 224/195/170/145/128)")
    p.add_argument("--lite", action="store_true", help="EfficientNet-lite trunk (no SE, ReLU6)")
    p.add_argument("--warmup-epochs", type=float, help="linear warm-up epochs to --lr (thesis: 5)")
    p.add_argument("--step-every", type=int, help="x0.1 every N epochs after the warm-up (thesis: 30)")
    p.add_argument("--min-crop", type=float, default=0.08, help="smallest random crop, as a fraction of the image area")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    p.add_argument("--config", metavar="YAML", help="run config file (every RunConfig field); flags override it")
    add_run_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtl_ehrnet.training.backbone_pretrain import train_backbone

    if not 0.0 < args.min_crop <= 1.0:
        raise ValueError(f"--min-crop must be in (0, 1], got {args.min_crop}")
    # The thesis's recipe, under the --config file's fields, under the flags typed.
    epochs, changes = layered_run_changes(args, default_epochs=200)
    changes.update({name: value for name, value in (("warmup_epochs", args.warmup_epochs),
                                                    ("step_every", args.step_every)) if value is not None})
    result = train_backbone(
        args.data,
        args.phi,
        args.out,
        epochs=epochs,
        input_size=args.input_size,
        lite=args.lite,
        crop_scale=(args.min_crop, 1.0),
        resume=args.resume,
        **changes,
    )
    print(f"last checkpoint: {result.last_checkpoint}")
    if result.history:
        final = result.history[-1]
        print(
            f"validation after epoch {final['epoch']}: top-1 {100 * final['top1']:.2f} %, "
            f"top-5 {100 * final['top5']:.2f} % ({int(final['samples'])} images)"
        )
    if result.best_checkpoint is not None:
        print(f"best checkpoint: {result.best_checkpoint} (top-1 {100 * result.best_value:.2f} %)")
    return 0
