"""``mtl-ehrnet synth-classes``: write the generated classification set (registered in setup.py)."""
from __future__ import annotations

import argparse

from mtl_ehrnet.data.synthetic_classes import LAYOUTS, MAX_CLASSES, generate_synthetic_classes


def run_synth_classes(args: argparse.Namespace) -> int:
    root = generate_synthetic_classes(args.out, args.classes, args.images_per_class, args.size, args.seed,
                                      layout=args.layout, progress=True)
    where = f"{root}/train and {root}/val" if args.layout == "imagefolder" else f"{root}/cifar-100-python"
    print(f"wrote {args.classes} classes x {args.images_per_class} training images to {where}")
    return 0


def register_synth_classes(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Adds ``synth-classes --out DIR [--classes 10] [--images-per-class 100] [--size 64] [--layout ...]``."""
    p = subparsers.add_parser(
        "synth-classes", help="write a generated image-classification set (ImageFolder or CIFAR-100 layout)",
        description="Class = shape x texture (up to 32 classes); position, size, rotation, colours, background "
                    "and clutter are random. Deterministic: the same seed gives the same files. Validation gets "
                    "20%% as many images per class as training.")
    p.add_argument("--out", required=True, help="output directory (the --data of train-backbone)")
    p.add_argument("--classes", type=int, default=10, help=f"number of classes, 2..{MAX_CLASSES}")
    p.add_argument("--images-per-class", type=int, default=100, help="training images per class")
    p.add_argument("--size", type=int, default=64, help="image side (the cifar layout is always 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", choices=LAYOUTS, default="imagefolder")
    p.set_defaults(func=run_synth_classes)
