"""Planted people for grouping and predictor tests: sub-pixel Gaussian joint peaks, tags constant per
person plus noise."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

# A standing person, 17 COCO joints as (x, y) offsets in map pixels (about 24 x 40).
SKELETON = np.array(
    [
        [0, -18], [-2, -20], [2, -20], [-4, -19], [4, -19],  # nose, eyes, ears
        [-7, -12], [7, -12], [-10, -4], [10, -4], [-12, 4], [12, 4],  # shoulders, elbows, wrists
        [-5, 2], [5, 2], [-6, 11], [6, 11], [-6, 20], [6, 20],  # hips, knees, ankles
    ],
    dtype=np.float64,
)


def render(
    joints: np.ndarray,
    person_tags: np.ndarray,
    size: Tuple[int, int],
    rng: np.random.Generator,
    sigma: float = 2.0,
    tag_noise: float = 0.05,
    flip_tags: bool = False,
    values: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Heatmaps (17, H, W) = max over people of Gaussians (peak ``values``, default 1) at sub-pixel
    joints (P, 17, 2); tags (17, H, W[, 2]) = tag of the nearest person's joint, plus noise."""
    height, width = size
    num_people = joints.shape[0]
    values = np.ones(joints.shape[:2]) if values is None else values
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    heatmaps = np.zeros((17, height, width), np.float32)
    dims = 2 if flip_tags else 1
    tags = np.zeros((17, height, width, dims), np.float32)
    for j in range(17):
        if num_people == 0:
            continue
        d2 = (xx[None] - joints[:, j, 0, None, None]) ** 2 + (yy[None] - joints[:, j, 1, None, None]) ** 2
        heatmaps[j] = (values[:, j, None, None] * np.exp(-d2 / (2 * sigma**2))).max(axis=0)
        nearest = d2.argmin(axis=0)
        tags[j] = person_tags[nearest][..., None]
    tags += rng.normal(0.0, tag_noise, tags.shape).astype(np.float32)
    return heatmaps, (tags if flip_tags else tags[..., 0])


def people_on_grid(num_people: int, size: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(P, 17, 2) sub-pixel joints of people placed in distinct cells of a grid over the map."""
    height, width = size
    cols = int(np.ceil(np.sqrt(num_people * width / height)))
    rows = int(np.ceil(num_people / cols))
    cells = rng.permutation(rows * cols)[:num_people]
    cx = (cells % cols + 0.5) * width / cols + rng.uniform(-2, 2, num_people)
    cy = (cells // cols + 0.5) * height / rows + rng.uniform(-2, 2, num_people)
    scale = min(height / rows / 52, width / cols / 32, 1.0)
    jitter = rng.uniform(-0.5, 0.5, (num_people, 17, 2))
    return np.stack((cx, cy), -1)[:, None, :] + SKELETON[None] * scale + jitter


def match_people(keypoints: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Index of the planted person (P, 17, 2) nearest (mean joint distance) to each pose (N, 17, 3)."""
    dist = np.linalg.norm(keypoints[:, None, :, :2] - joints[None], axis=-1).mean(-1)
    return dist.argmin(axis=1)


def plant(
    num_people: int, size: Tuple[int, int] = (128, 128), flip_tags: bool = False, seed: int = 0
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(joints (P, 17, 2), heatmaps (17, H, W), tags) for ``num_people`` people on a grid; tags 2 apart."""
    rng = np.random.default_rng(seed)
    joints = people_on_grid(num_people, size, rng)
    person_tags = 2.0 * rng.permutation(num_people) if num_people else np.zeros(0)
    heatmaps, tags = render(joints, person_tags, size, rng, flip_tags=flip_tags)
    return joints, heatmaps, tags
