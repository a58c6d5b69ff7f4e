"""``mtl-ehrnet synth`` and ``mtl-ehrnet data-benchmark`` (registered in setup.py's entry points)."""
from __future__ import annotations

import argparse
import os
from typing import Tuple

from mtl_ehrnet.data.benchmark import benchmark_pipeline
from mtl_ehrnet.data.scene import SceneOptions
from mtl_ehrnet.data.synthetic import DEFAULT_SIZE, generate_synthetic


def parse_size(text: str) -> Tuple[int, int]:
    """Parses ``WxH`` (e.g. ``320x240``) into (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' is not WxH, e.g. 320x240") from None
    return width, height


def add_scene_flags(parser: argparse.ArgumentParser, defaults: SceneOptions) -> None:
    """Adds ``--people MIN MAX``, ``--min-person-height`` and ``--max-person-height`` (who is in a scene)."""
    parser.add_argument("--people", type=int, nargs=2, default=list(defaults.people), metavar=("MIN", "MAX"),
                        help="people per image, crowds aside (default %(default)s)")
    parser.add_argument("--min-person-height", type=float, default=defaults.min_person_height, metavar="FRAC",
                        help="smallest person as a fraction of the image height (default %(default)s)")
    no_limit = "no limit" if defaults.max_person_height is None else "%(default)s"
    parser.add_argument("--max-person-height", type=float, default=defaults.max_person_height, metavar="FRAC",
                        help=f"tallest person as a fraction of the image height (default: {no_limit})")


def scene_options(args: argparse.Namespace, command: str, crowds: bool) -> SceneOptions:
    """The :class:`SceneOptions` of :func:`add_scene_flags`'s flags; a bad value exits naming ``command``."""
    try:
        return SceneOptions(people=tuple(args.people), min_person_height=args.min_person_height,
                            max_person_height=args.max_person_height, crowds=crowds)
    except ValueError as error:
        raise SystemExit(f"mtl-ehrnet {command}: {error}") from None


def run_synth(args: argparse.Namespace) -> int:
    scene = scene_options(args, "synth", crowds=not args.no_crowds)
    layout = generate_synthetic(args.out, args.images, args.seed, args.size, progress=True, scene_options=scene)
    print(f"wrote COCO keypoints to {layout.root / 'coco'}, Cityscapes to {layout.cityscapes_root}, "
          f"joint/val to {layout.joint_root}")
    return 0


def register_synth(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``synth OUT --images N --seed S [--size WxH]``."""
    parser = subparsers.add_parser(
        "synth", help="write the synthetic street-scene dataset (COCO keypoints + Cityscapes formats)",
        description="Writes OUT/coco, OUT/cityscapes and OUT/joint (val split with both label kinds). "
                    "Deterministic: the same seed gives the same files.")
    parser.add_argument("out", metavar="OUT", help="output directory")
    parser.add_argument("--images", type=int, default=200, help="images per task set (20%% go to val)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, metavar="WxH",
                        help=f"image size (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    add_scene_flags(parser, SceneOptions())
    parser.add_argument("--no-crowds", action="store_true", help="no crowd annotations")
    parser.set_defaults(func=run_synth)


def run_benchmark(args: argparse.Namespace) -> int:
    rate = benchmark_pipeline(args.data, input_size=args.input_size, workers=args.workers,
                              batch_size=args.batch_size, batches=args.batches)
    print(f"data pipeline: {rate:.1f} samples/s at input {args.input_size} with {args.workers} workers, "
          f"batch {args.batch_size} ({os.cpu_count()} CPU cores)")
    return 0


def register_benchmark(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``data-benchmark [--data DIR] [--input-size 512] [--workers 2] ...``."""
    parser = subparsers.add_parser(
        "data-benchmark", help="samples/s of the training data pipeline (task-mixed, augmented)")
    parser.add_argument("--data", default=None, help="synthetic root from `mtl-ehrnet synth` "
                        "(default: generate 64 images of 640x480 in a temporary directory)")
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=30, help="timed batches")
    parser.set_defaults(func=run_benchmark)
