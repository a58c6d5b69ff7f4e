"""Grouping time next to the ``pose_h0`` forward time, measured in the same run.

Printed by ``mtl-ehrnet benchmark --grouping`` and ``python tools/bench_grouping.py [--size 512] [--runs 20]
[--threads N]``. The maps are what a trained network produces at stride 2 for a
``size`` input: training-target Gaussians (``mtl_ehrnet.data.targets``) at the joints of random
people (the synthetic generator's poses), tags constant per person plus noise, flip-test tags
concatenated (D = 2).
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from evaluation.latency import Timing, measure_latency
from mtl_ehrnet import create_model
from mtl_ehrnet.data.scene import pose_skeleton
from mtl_ehrnet.data.targets import heatmap_targets
from mtl_ehrnet.inference import group_poses


def planted_maps(num_people: int, map_size: int, flip_tags: bool, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Heatmaps (17, S, S) and tags (17, S, S[, 2]) of ``num_people`` random people on an S x S map."""
    rng = np.random.default_rng(seed)
    people = []
    for _ in range(num_people):
        height = rng.uniform(0.15, 0.45) * map_size
        foot = (rng.uniform(0.1, 0.9) * map_size, rng.uniform(height, map_size - 1))
        people.append(pose_skeleton(rng, foot, height, bool(rng.integers(2))))
    joints = np.stack(people) if people else np.zeros((0, 17, 2))
    keypoints = np.concatenate((joints, np.ones((num_people, 17, 1))), axis=2)
    heatmaps = heatmap_targets(keypoints, map_size, map_size, sigma=2.0)
    person_tags = rng.permutation(num_people).astype(np.float32) * 2.0
    dims = 2 if flip_tags else 1
    tags = rng.normal(0, 0.1, (17, map_size, map_size, dims)).astype(np.float32)
    yy, xx = np.mgrid[0:map_size, 0:map_size]
    for j in range(17):
        if num_people:
            d2 = (xx[None] - joints[:, j, 0, None, None]) ** 2 + (yy[None] - joints[:, j, 1, None, None]) ** 2
            tags[j] += person_tags[d2.argmin(axis=0)][..., None]
    return heatmaps, tags if flip_tags else tags[..., 0]


def time_grouping(heatmaps: np.ndarray, tags: np.ndarray, runs: int) -> Tuple[Timing, int]:
    """Timing of ``group_poses`` on torch tensors (as the predictor calls it) and the poses found."""
    heat, tag = torch.from_numpy(heatmaps), torch.from_numpy(tags)
    found = len(group_poses(heat, tag)[0])
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        group_poses(heat, tag)
        seconds.append(time.perf_counter() - start)
    return Timing.of(seconds), found


def grouping_table(
    size: int = 512, runs: int = 20, forward_runs: int = 5, threads: Optional[int] = None
) -> List[Dict[str, object]]:
    """Rows of grouping time for 10 and 30 people with and without flip tags, beside pose_h0's forward."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        forward = measure_latency(create_model("pose_h0"), size, warmup=1, runs=forward_runs).forward
        rows = []
        for people in (10, 30):
            for flip in (False, True):
                heatmaps, tags = planted_maps(people, size // 2, flip, seed=people)
                timing, found = time_grouping(heatmaps, tags, runs)
                rows.append(
                    {
                        "people": people,
                        "flip_tags": flip,
                        "found": found,
                        "grouping": timing,
                        "forward": forward,
                        "ratio": timing.median_ms / forward.median_ms,
                    }
                )
    finally:
        torch.set_num_threads(previous)
    return rows


def format_table(rows: List[Dict[str, object]], size: int, threads: int) -> str:
    lines = [
        f"Grouping at map resolution ({size // 2}x{size // 2}) vs pose_h0 forward at {size}x{size}, "
        f"CPU, {threads} torch threads:",
        "| people | flip tags | poses found | grouping median (p10-p90) | pose_h0 forward median "
        "| grouping / forward |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, f = r["grouping"], r["forward"]
        lines.append(
            f"| {r['people']} | {'yes' if r['flip_tags'] else 'no'} | {r['found']} | "
            f"{g.median_ms:.1f} ms ({g.p10_ms:.1f}-{g.p90_ms:.1f}) | {f.median_ms:.0f} ms | {100 * r['ratio']:.1f} % |"
        )
    return "\n".join(lines)
