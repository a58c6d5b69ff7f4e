"""``mtl-ehrnet synth`` and ``mtl-ehrnet data-benchmark`` (registered in setup.py's entry points)."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Tuple

from mtl_ehrnet.data.benchmark import benchmark_pipeline
from mtl_ehrnet.data.scene import SceneOptions
from mtl_ehrnet.data.synthetic import DEFAULT_SIZE, generate_synthetic
from mtl_ehrnet.data.worker_rates import (
    CITYSCAPES_FRAME,
    COCO_FRAME,
    cached_synthetic,
    format_rate_table,
    measure_worker_rates,
)


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
    from mtl_ehrnet.inference.machine import this_machine

    if args.steps_per_second is not None and args.steps_per_second <= 0:
        raise ValueError(f"--steps-per-second must be positive, got {args.steps_per_second}")
    cache = Path(args.data_dir) if args.data_dir else Path(tempfile.gettempdir()) / "mtl-ehrnet-data-benchmark"
    frames = (args.coco_size, args.cityscapes_size)
    rows = measure_worker_rates(cache, images=args.images, samples=args.samples, batch_size=args.batch_size,
                                frames=frames)
    print(f"one DataLoader worker (one thread: decode, augmentation, targets, collate), {this_machine().cpu}, "
          f"{os.cpu_count()} CPU cores, sets cached in {cache}")
    print(format_rate_table(rows, args.steps_per_second or 0.0, args.batch_size))
    if args.batches > 0:
        data = args.data or cached_synthetic(cache, args.coco_size, args.images).root
        rate = benchmark_pipeline(data, input_size=args.input_size, workers=args.workers,
                                  batch_size=args.batch_size, batches=args.batches)
        print(f"task-mixed loader: {rate:.1f} samples/s at input {args.input_size} with {args.workers} workers, "
              f"batch {args.batch_size} ({os.cpu_count()} CPU cores)")
    return 0


def register_benchmark(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``data-benchmark [--steps-per-second R] [--batch-size B] [--data-dir DIR] ...``."""
    parser = subparsers.add_parser(
        "data-benchmark", help="samples/s of the training data pipeline: per worker and dataset, and task-mixed",
        description="Prints one row per (dataset, input size): samples/s of one DataLoader worker and ms/sample "
                    "on COCO-like 640x480 and Cityscapes-like 2048x1024 frames at the thesis's inputs (512x512 for "
                    "both, 1024x512 for Cityscapes), and with --steps-per-second the workers each GPU needs, "
                    "ceil(R * B / rate); then the rate of a task-mixed loader with --workers processes.")
    parser.add_argument("--steps-per-second", type=float, default=None, metavar="R",
                        help="target optimizer steps per second per GPU: adds the workers-per-GPU column")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per batch per GPU (default %(default)s)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="where the generated sets are cached (default: mtl-ehrnet-data-benchmark in the "
                             "system temporary directory)")
    parser.add_argument("--images", type=int, default=16, help="images per generated set (default %(default)s)")
    parser.add_argument("--samples", type=int, default=32, help="timed samples per row (default %(default)s)")
    parser.add_argument("--coco-size", type=parse_size, default=COCO_FRAME, metavar="WxH",
                        help=f"COCO-like frame (default {COCO_FRAME[0]}x{COCO_FRAME[1]})")
    parser.add_argument("--cityscapes-size", type=parse_size, default=CITYSCAPES_FRAME, metavar="WxH",
                        help=f"Cityscapes-like frame (default {CITYSCAPES_FRAME[0]}x{CITYSCAPES_FRAME[1]})")
    parser.add_argument("--data", default=None, help="synthetic root from `mtl-ehrnet synth` for the task-mixed "
                        "loader (default: the cached COCO-like set)")
    parser.add_argument("--input-size", type=int, default=512, help="task-mixed loader input size")
    parser.add_argument("--workers", type=int, default=2, help="task-mixed loader worker processes")
    parser.add_argument("--batches", type=int, default=30, help="task-mixed loader timed batches (0: skip it)")
    parser.set_defaults(func=run_benchmark)
