"""The AP a perfect network would score: label-derived maps run through the real predictor, grouping and
COCOeval. It bounds what any model can reach at an input size (small people are lost to map resolution)
and checks the whole inference chain end to end.

    python tools/oracle.py --coco ANN_FILE IMAGE_DIR --input-size 256
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn

from evaluation.dataset_eval import evaluate_coco
from mtl_ehrnet.data import CocoKeypoints
from mtl_ehrnet.data.transforms import build_sample

PathLike = Union[str, Path]


class LabelOracle(nn.Module):
    """A stand-in pose model that returns the data layer's target heatmaps and one constant tag per person
    (at each labelled joint) for the images it is called on, in dataset order.

    It must see the images in the order of ``dataset`` one at a time, as :func:`oracle_ap` runs it.
    """

    tasks = ("pose",)

    def __init__(self, dataset: CocoKeypoints, input_size: int) -> None:
        super().__init__()
        self.dataset, self.input_size = dataset, (input_size, input_size)
        self._next = 0

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        if images.shape[0] != 1:
            raise ValueError("the oracle answers one image at a time (batch_size=1)")
        raw = self.dataset.load(self._next)
        self._next += 1
        # The predictor's resize: short side to input_size, each axis rounded; maps are in corner coordinates.
        f = self.input_size[0] / min(raw.height, raw.width)
        fy, fx = round(raw.height * f) / raw.height, round(raw.width * f) / raw.width
        matrix = np.diag([fx, fy, 1.0])
        sample = build_sample(raw, matrix, tuple(images.shape[-2:]), num_joints=self.dataset.num_joints)
        joints = sample["joints"]  # (M, K, 2) flat index at stride 4, visible
        h4, w4 = sample["heatmaps_lr"].shape[-2:]
        tags = torch.zeros(joints.shape[1], h4, w4)
        for person, joint in torch.nonzero(joints[..., 1] > 0).tolist():
            y, x = divmod(int(joints[person, joint, 0]), w4)
            tags[joint, y, x] = 2.0 * (person + 1)  # people 2 apart: beyond the tag threshold of 1
        return {"heatmaps": sample["heatmaps"][None], "heatmaps_lr": sample["heatmaps_lr"][None], "tags": tags[None]}


def oracle_ap(
    ann_file: PathLike, image_dir: PathLike, input_size: int, limit: Optional[int] = None
) -> Dict[str, float]:
    """COCO keypoint AP of perfect maps at ``input_size`` (see the module docstring)."""
    dataset = CocoKeypoints(image_dir, ann_file, strict=False)
    oracle = LabelOracle(dataset, input_size)
    return evaluate_coco(oracle, ann_file, image_dir, batch_size=1, input_size=input_size, limit=limit, progress=False)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coco", nargs=2, required=True, metavar=("ANN_FILE", "IMAGE_DIR"))
    parser.add_argument("--input-size", type=int, nargs="+", default=[256], help="one or more short sides")
    parser.add_argument("--limit", type=int, help="first N images only")
    args = parser.parse_args(argv)
    for size in args.input_size:
        metrics = oracle_ap(args.coco[0], args.coco[1], size, args.limit)
        print(f"input {size}: " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
