"""The COCO person skeleton: keypoint names, limbs and the horizontal-flip index."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

COCO_KEYPOINT_NAMES: Tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(COCO_KEYPOINT_NAMES)

# Mirroring an image swaps every left joint with its right twin (DESIGN.md section 4).
COCO_FLIP_INDEX: Tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

# Limbs as 0-based joint pairs; the COCO json stores the same list 1-based.
COCO_SKELETON: Tuple[Tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)


def check_flip_index(flip_index: Sequence[int], num_joints: int) -> np.ndarray:
    """Validates a flip index: a permutation of ``range(num_joints)`` that is its own inverse.

    Returns:
        The flip index as an int64 array of shape (num_joints,).

    Raises:
        ValueError: naming the offending flip index.
    """
    index = np.asarray(flip_index, dtype=np.int64)
    if index.shape != (num_joints,) or sorted(index.tolist()) != list(range(num_joints)):
        raise ValueError(f"flip_index {list(flip_index)} is not a permutation of {num_joints} joints")
    if not np.array_equal(index[index], np.arange(num_joints)):
        raise ValueError(f"flip_index {list(flip_index)} must swap joints in pairs (be its own inverse)")
    return index
