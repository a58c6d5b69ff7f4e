"""Heatmap and associative-embedding targets."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_ehrnet.data.targets import heatmap_targets, joint_targets


def _naive_heatmaps(keypoints: np.ndarray, height: int, width: int, sigma: float) -> np.ndarray:
    """Reference loop: one Gaussian patch per joint, max over people."""
    heat = np.zeros((keypoints.shape[1], height, width), dtype=np.float32)
    radius = int(round(3 * sigma + 1))
    for person in keypoints:
        for k, (x, y, v) in enumerate(person):
            cx, cy = int(np.rint(x)), int(np.rint(y))
            if v <= 0 or not (0 <= cx < width and 0 <= cy < height):
                continue
            for yy in range(cy - radius, cy + radius + 1):
                for xx in range(cx - radius, cx + radius + 1):
                    if 0 <= yy < height and 0 <= xx < width:
                        g = math.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
                        heat[k, yy, xx] = max(heat[k, yy, xx], g)
    return heat


def test_peak_is_one_at_the_rounded_joint():
    keypoints = np.array([[[10.4, 7.6, 2], [3.0, 3.0, 0]]], dtype=np.float32)
    heat = heatmap_targets(keypoints, 16, 20, sigma=2.0)
    assert heat.shape == (2, 16, 20)
    assert heat[0, 8, 10] == 1.0 and heat[0].max() == 1.0
    assert heat[0, 8, 11] == pytest.approx(math.exp(-1 / 8))
    assert heat[1].sum() == 0  # unlabelled joint


def test_vectorised_matches_reference_loop():
    rng = np.random.default_rng(0)
    keypoints = np.concatenate([rng.uniform(-5, 37, (6, 17, 2)), rng.integers(0, 3, (6, 17, 1))], axis=-1)
    np.testing.assert_allclose(heatmap_targets(keypoints, 24, 32, 2.0), _naive_heatmaps(keypoints, 24, 32, 2.0),
                               rtol=1e-6, atol=1e-7)


def test_joints_outside_the_map_are_dropped():
    keypoints = np.array([[[-1.0, 4, 2], [4, 16.0, 1], [15.4, 15.4, 1]]])
    heat = heatmap_targets(keypoints, 16, 16)
    joints = joint_targets(keypoints, 16, 16)
    assert heat[0].sum() == 0 and heat[1].sum() == 0 and heat[2, 15, 15] == 1
    assert joints[0, :, 1].tolist() == [0, 0, 1] and joints[0, 2, 0] == 15 * 16 + 15


def test_joint_targets_index_and_max_people():
    keypoints = np.zeros((35, 17, 3))
    keypoints[:, 0] = [5, 3, 2]  # nose at x=5, y=3 for everybody
    joints = joint_targets(keypoints, 8, 12, max_people=30)
    assert joints.shape == (30, 17, 2) and joints.dtype == np.int64
    assert (joints[:, 0, 0] == 3 * 12 + 5).all() and (joints[:, 0, 1] == 1).all()
    assert joints[:, 1:].sum() == 0
    assert joint_targets(np.zeros((0, 17, 3)), 8, 8).sum() == 0
