"""HigherHRNet training targets, vectorised with numpy (they are built for every sample of every epoch).

Keypoints come in map pixel coordinates: ``(x, y, visibility)`` with ``x`` the column index of the
map pixel centre. A joint is a target when its visibility is > 0 and its rounded position lies inside
the map (as in HigherHRNet, a joint whose centre falls outside contributes nothing, not even the
Gaussian tail that would reach inside).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def _valid_joints(keypoints: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, ...]:
    xs = np.rint(keypoints[..., 0]).astype(np.int64)
    ys = np.rint(keypoints[..., 1]).astype(np.int64)
    valid = (keypoints[..., 2] > 0) & (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    return xs, ys, valid


def heatmap_targets(keypoints: np.ndarray, height: int, width: int, sigma: float = 2.0) -> np.ndarray:
    """Unnormalised Gaussians (peak 1 at the rounded joint position), max over people.

    Args:
        keypoints: float (N, K, 3) joints in map pixel coordinates.
        height: map height.
        width: map width.
        sigma: Gaussian standard deviation in map pixels (HigherHRNet: 2 at every resolution).

    Returns:
        float32 (K, height, width).
    """
    num_people, num_joints = keypoints.shape[:2]
    heat = np.zeros((num_joints, height * width), dtype=np.float32)
    if num_people == 0:
        return heat.reshape(num_joints, height, width)
    xs, ys, valid = _valid_joints(keypoints, height, width)
    person, joint = np.nonzero(valid)
    # HigherHRNet's patch is 6*sigma + 3 pixels wide: radius 3*sigma + 1.
    radius = int(round(3 * sigma + 1))
    offsets = np.arange(-radius, radius + 1)
    profile = np.exp(-(offsets.astype(np.float32) ** 2) / (2 * sigma**2))
    px = xs[person, joint][:, None] + offsets  # (M, P)
    py = ys[person, joint][:, None] + offsets  # (M, P)
    inside = ((py >= 0) & (py < height))[:, :, None] & ((px >= 0) & (px < width))[:, None, :]
    flat = joint[:, None, None] * (height * width) + py[:, :, None] * width + px[:, None, :]
    values = np.broadcast_to(profile[:, None] * profile[None, :], flat.shape)
    np.maximum.at(heat.reshape(-1), flat[inside], values[inside])
    return heat.reshape(num_joints, height, width)


def joint_targets(keypoints: np.ndarray, height: int, width: int, max_people: int = 30) -> np.ndarray:
    """Associative-embedding targets: where each person's joints are on the map.

    Args:
        keypoints: float (N, K, 3) joints in map pixel coordinates; people beyond ``max_people`` are
            dropped (their heatmaps still count).
        height: map height.
        width: map width.
        max_people: rows of the output.

    Returns:
        int64 (max_people, K, 2): flat index ``y * width + x`` and a visible flag 0/1.
    """
    num_joints = keypoints.shape[1]
    joints = np.zeros((max_people, num_joints, 2), dtype=np.int64)
    keypoints = keypoints[:max_people]
    xs, ys, valid = _valid_joints(keypoints, height, width)
    n = keypoints.shape[0]
    joints[:n, :, 0] = np.where(valid, ys * width + xs, 0)
    joints[:n, :, 1] = valid
    return joints
