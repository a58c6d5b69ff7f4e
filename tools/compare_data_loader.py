"""Per-sample cost of our pose training data path next to HigherHRNet's, on the same images.

Ours: ``CocoKeypoints`` + ``TrainTransform(S)`` (decode, augmentation, heatmap/mask/joint targets).
Theirs: ``lib/dataset`` of a HigherHRNet checkout (``CocoKeypoints`` + its training transforms +
``HeatmapGenerator`` / ``JointsGenerator``), configured from its ``w32_512`` experiment with the input
size and data overridden. Both run in this process on one thread (torch and OpenCV), on the same
COCO-format images, indexed identically. Rounds alternate which side goes first; the result is the
median ms/sample of each side and the median of the per-round ratios, so load from other jobs on the
machine cancels out of the ratio.

HigherHRNet needs ``opencv-python-headless``, ``json_tricks`` and ``yacs``, which mtl_ehrnet does not
depend on: install them for the measurement only.

Usage:
    python tools/compare_data_loader.py --higherhrnet PATH [--data DIR] [--images 64]
        [--input-size 512] [--samples 16] [--rounds 15]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Callable, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mtl_ehrnet.data import CocoKeypoints, SyntheticLayout, TrainTransform, generate_synthetic  # noqa: E402


def reference_dataset(checkout: Path, coco_root: Path, split: str, input_size: int):
    """HigherHRNet's training dataset over ``coco_root/{images,annotations}`` at ``input_size``."""
    lib = checkout / "lib"
    sys.path.insert(0, str(lib))
    # Its dataset package imports CrowdPose tooling on import; load the COCO modules without it.
    package = types.ModuleType("dataset")
    package.__path__ = [str(lib / "dataset")]
    sys.modules["dataset"] = package
    import cv2
    from config import cfg as default_cfg
    from dataset.COCOKeypoints import CocoKeypoints as RefCocoKeypoints
    from dataset.target_generators import HeatmapGenerator, JointsGenerator
    from dataset.transforms import build_transforms

    cv2.setNumThreads(1)
    cfg = default_cfg.clone()
    cfg.merge_from_file(str(checkout / "experiments" / "coco" / "higher_hrnet" / "w32_512_adam_lr1e-3.yaml"))
    cfg.merge_from_list(["DATASET.ROOT", str(coco_root), "DATASET.TRAIN", split,
                         "DATASET.INPUT_SIZE", input_size,
                         "DATASET.OUTPUT_SIZE", [input_size // 4, input_size // 2]])
    data = cfg.DATASET
    heatmaps = [HeatmapGenerator(size, data.NUM_JOINTS, data.SIGMA) for size in data.OUTPUT_SIZE]
    joints = [JointsGenerator(data.MAX_NUM_PEOPLE, data.NUM_JOINTS, size, cfg.MODEL.TAG_PER_JOINT)
              for size in data.OUTPUT_SIZE]
    return RefCocoKeypoints(cfg, split, True, heatmaps, joints, build_transforms(cfg, True))


def time_block(get: Callable[[int], object], indices: List[int]) -> float:
    """Seconds per sample over ``indices``."""
    start = time.perf_counter()
    for index in indices:
        get(index)
    return (time.perf_counter() - start) / len(indices)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--higherhrnet", type=Path, required=True, help="HigherHRNet checkout (holds lib/)")
    parser.add_argument("--data", type=Path, default=None,
                        help="root written by `mtl-ehrnet synth` (default: generate --images at 640x480)")
    parser.add_argument("--images", type=int, default=64, help="images to generate without --data")
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--samples", type=int, default=16, help="samples per side per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    torch.set_num_threads(1)
    np.random.seed(0)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data or generate_synthetic(Path(scratch) / "synth", args.images, 0, (640, 480)).root
        layout = SyntheticLayout(root)
        ours = CocoKeypoints(layout.coco_images("train"), layout.coco_annotations("train"),
                             TrainTransform(args.input_size), skip_empty=True)
        theirs = reference_dataset(args.higherhrnet.resolve(), layout.root / "coco", "train", args.input_size)
        if len(ours) != len(theirs):
            raise SystemExit(f"the two datasets disagree on the sample count: {len(ours)} vs {len(theirs)}")
        count = len(ours)
        first = ours.images[ours.ids[0]]
        warmup = list(range(min(count, 4)))
        time_block(ours.__getitem__, warmup)
        time_block(theirs.__getitem__, warmup)
        ours_ms, theirs_ms, ratios = [], [], []
        for round_index in range(args.rounds):
            indices = [(round_index * args.samples + i) % count for i in range(args.samples)]
            if round_index % 2:
                b = time_block(theirs.__getitem__, indices)
                a = time_block(ours.__getitem__, indices)
            else:
                a = time_block(ours.__getitem__, indices)
                b = time_block(theirs.__getitem__, indices)
            ours_ms.append(a * 1e3)
            theirs_ms.append(b * 1e3)
            ratios.append(a / b)
    print(f"{count} images of {first['width']}x{first['height']}, input {args.input_size}, one thread, "
          f"{args.rounds} interleaved rounds "
          f"of {args.samples} samples (medians)")
    print(f"mtl_ehrnet   {statistics.median(ours_ms):6.2f} ms/sample")
    print(f"HigherHRNet  {statistics.median(theirs_ms):6.2f} ms/sample")
    print(f"ratio ours/HigherHRNet {statistics.median(ratios):.2f}x "
          f"(rounds from {min(ratios):.2f} to {max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
