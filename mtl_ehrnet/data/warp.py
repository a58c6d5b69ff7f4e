"""Affine warps of a sample's image, loss mask and labels onto the network input.

Matrices take source *corner* coordinates (pixel ``i`` spans ``[i, i + 1)``) to output corner
coordinates, as in :mod:`mtl_ehrnet.data.transforms`. Image and mask are sampled bilinearly with
``torch.nn.functional.grid_sample`` (``align_corners=False`` is the corner convention; zero padding, so
outside the source is black and, for the mask, not counted). Only the source window that the output
reads is converted to float, so a zoomed-in crop does not pay for the whole frame. Labels use Pillow's
nearest-neighbour affine, which stays on uint8.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mtl_ehrnet.data.sample import IGNORE_INDEX

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_SCALE = torch.from_numpy(1.0 / (255.0 * IMAGENET_STD))[:, None, None]
_SHIFT = torch.from_numpy(IMAGENET_MEAN / IMAGENET_STD)[:, None, None]


def source_window(matrix: np.ndarray, source_hw: Tuple[int, int], out_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """The source rows and columns that bilinear samples of the output can read.

    Args:
        matrix: (3, 3) source-to-output affine in corner coordinates.
        source_hw: source (H, W).
        out_hw: output (h, w).

    Returns:
        (top, bottom, left, right), a non-empty slice of the source (bottom and right exclusive).
    """
    height, width = source_hw
    out_h, out_w = out_hw
    corners = np.array([[0, out_w, 0, out_w], [0, 0, out_h, out_h], [1, 1, 1, 1]], dtype=np.float64)
    xs, ys = (np.linalg.inv(matrix) @ corners)[:2]
    # A sample at corner coordinate c reads pixels floor(c - 0.5) and the next; one more pixel of margin
    # each side absorbs rounding, so the window never cuts off a pixel that a sample reads.
    bounds = []
    for low, high, size in ((ys.min(), ys.max(), height), (xs.min(), xs.max(), width)):
        start = min(max(int(np.floor(low - 0.5)) - 1, 0), size - 1)
        stop = max(min(int(np.floor(high - 0.5)) + 3, size), start + 1)
        bounds += [start, stop]
    return bounds[0], bounds[1], bounds[2], bounds[3]


def sampling_grid(matrix: np.ndarray, source_hw: Tuple[int, int], out_hw: Tuple[int, int]) -> torch.Tensor:
    """``grid_sample`` coordinates (``align_corners=False``) of every output pixel centre.

    Args:
        matrix: (3, 3) source-to-output affine in corner coordinates.
        source_hw: source (H, W) that the grid addresses.
        out_hw: output (h, w).

    Returns:
        float32 (1, h, w, 2), (x, y) in [-1, 1] across the source.
    """
    height, width = source_hw
    out_h, out_w = out_hw
    to_unit = np.array([[2.0 / width, 0, -1], [0, 2.0 / height, -1], [0, 0, 1]])
    inverse = to_unit @ np.linalg.inv(matrix)
    xs = torch.arange(out_w, dtype=torch.float64) + 0.5
    ys = torch.arange(out_h, dtype=torch.float64) + 0.5
    grid = torch.empty((1, out_h, out_w, 2), dtype=torch.float32)
    # An affine grid is a row term plus a column term: two small vectors and one broadcast add per axis.
    for axis in range(2):
        rows = (ys * inverse[axis, 1] + inverse[axis, 2]).float()[:, None]
        cols = (xs * inverse[axis, 0]).float()[None, :]
        torch.add(rows, cols, out=grid[0, :, :, axis])
    return grid


def _window(
    matrix: np.ndarray, source_hw: Tuple[int, int], out_hw: Tuple[int, int]
) -> Tuple[slice, slice, torch.Tensor]:
    top, bottom, left, right = source_window(matrix, source_hw, out_hw)
    shift = np.array([[1, 0, left], [0, 1, top], [0, 0, 1]], dtype=np.float64)
    grid = sampling_grid(matrix @ shift, (bottom - top, right - left), out_hw)
    return slice(top, bottom), slice(left, right), grid


def warp_image(image: np.ndarray, matrix: np.ndarray, out_hw: Tuple[int, int]) -> torch.Tensor:
    """Bilinear warp of an RGB image, ImageNet-normalised; outside the source is black.

    Args:
        image: uint8 (H, W, 3).
        matrix: (3, 3) source-to-output affine in corner coordinates.
        out_hw: output (h, w).

    Returns:
        float32 (3, h, w).
    """
    rows, cols, grid = _window(matrix, image.shape[:2], out_hw)
    # astype keeps the (H, W, 3) memory order, so the (3, H, W) view is channels-last: one pass over the
    # window, no transpose, and grid_sample reads the three channels of a pixel together.
    source = torch.from_numpy(image[rows, cols].transpose(2, 0, 1).astype(np.float32))
    warped = F.grid_sample(source[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    # The warp is linear and pads with 0, so normalising the (smaller) output afterwards is the same and
    # puts the outside on normalised black.
    return warped.mul_(_SCALE).sub_(_SHIFT)


def warp_mask(ignore: Optional[np.ndarray], source_hw: Tuple[int, int], matrix: np.ndarray,
              out_hw: Tuple[int, int]) -> torch.Tensor:
    """Where the loss counts: bilinear warp of ``not ignore``, thresholded at 0.5; outside the source is 0.

    Args:
        ignore: bool (H, W), True where the loss must not count; ``None`` for nowhere.
        source_hw: source (H, W).
        matrix: (3, 3) source-to-output affine in corner coordinates.
        out_hw: output (h, w).

    Returns:
        float32 (h, w) of 0 / 1.
    """
    rows, cols, grid = _window(matrix, source_hw, out_hw)
    if ignore is None:
        source = torch.ones((rows.stop - rows.start, cols.stop - cols.start), dtype=torch.float32)
    else:
        source = torch.from_numpy(np.logical_not(ignore[rows, cols]).astype(np.float32))
    warped = F.grid_sample(source[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped[0, 0].gt_(0.5)


def warp_labels(labels: np.ndarray, matrix: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour warp of train ids; outside the source is 255 (ignore).

    Args:
        labels: uint8 (H, W).
        matrix: (3, 3) source-to-output affine in corner coordinates.
        out_hw: output (h, w).

    Returns:
        uint8 (h, w).
    """
    inverse = np.linalg.inv(matrix)
    data = tuple(inverse[0, :3]) + tuple(inverse[1, :3])
    warped = Image.fromarray(np.ascontiguousarray(labels), "L").transform(
        (out_hw[1], out_hw[0]), Image.Transform.AFFINE, data, resample=Image.Resampling.NEAREST,
        fillcolor=IGNORE_INDEX)
    return np.array(warped)
