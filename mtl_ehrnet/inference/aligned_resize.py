"""HigherHRNet's test-time resize, for the reference inference pipeline.

The short side of the image goes to ``input_size`` rounded up to a multiple of 64 (scaled by the test
scale), the long side keeps the aspect and is rounded up to a multiple of 64 too, and one similarity
transform (a "center / scale" box, no padding) maps the image into that input. The warp reproduces
OpenCV 3.x/4.x ``warpAffine`` with bilinear interpolation on uint8 images bit for bit (fixed-point
source positions in 1/32 pixel, 15-bit weights, black outside the image), which is what produced the
published HigherHRNet / EfficientHRNet numbers (OpenCV 5 computes the warp in floating point).

Coordinates: an input pixel ``j`` reads image position ``M^-1 (j, i)`` with pixel centres at integers
(OpenCV's convention), and the reference maps a heatmap position ``u`` (pixel ``i`` spans
``[i, i + 1)``) back to the image with the same box as ``M^-1`` of an input of the heatmap's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

# The reference expresses the box in units of 200 pixels (the MPII / COCO person-scale convention); its
# arithmetic is kept so that matrices, and the fixed-point warp that depends on them, match bit for bit.
_BOX_UNIT = 200.0
_ALIGN = 64
_COORD_BITS = 10  # OpenCV warpAffine: source positions in 1/1024 pixel before rounding to 1/32
_FRACTION_BITS = 5  # 1/32 pixel positions and weights


@dataclass(frozen=True)
class AlignedFrame:
    """Where an image sits in the network input at one test scale.

    Attributes:
        width, height: network input size, as the reference rounds it (multiples of 64 at the smallest
            scale, times ``scale / min_scale``).
        center: (x, y) image point placed at the input's centre, ``int(w / 2 + 0.5), int(h / 2 + 0.5)``.
        box: (width, height) of the image region the input covers, in units of 200 pixels; only the
            width sets the transform (it is a similarity).
    """

    width: int
    height: int
    center: Tuple[int, int]
    box: Tuple[float, float]

    def image_to_input(self) -> np.ndarray:
        """(2, 3) float64 affine taking image points (pixel centres at integers) into the input."""
        return box_affine(self.center, self.box[0], (self.width, self.height))

    def map_to_image(self, points: np.ndarray, map_size: Tuple[int, int]) -> np.ndarray:
        """Image positions of map points.

        Args:
            points: (..., 2) float (x, y) on a map of ``map_size`` (width, height) that spans this frame's
                box, pixel ``i`` covering ``[i, i + 1)`` (the reference's ``+ 0.5`` already added).
            map_size: (width, height) of that map.

        Returns:
            (..., 2) float32 image coordinates.
        """
        affine = box_affine(self.center, self.box[0], map_size, inverse=True)
        xy = np.asarray(points, np.float64)
        return (xy @ affine[:, :2].T + affine[:, 2]).astype(np.float32)


def _align_up(value: float) -> int:
    """The reference's rounding up to a multiple of 64 (its float floor division, kept for equal sizes)."""
    return int((value + _ALIGN - 1) // _ALIGN * _ALIGN)


def aligned_frame(
    height: int, width: int, input_size: int, scale: float = 1.0, min_scale: float = 1.0
) -> AlignedFrame:
    """HigherHRNet's input size and box for an image at one test scale.

    The smallest test scale fixes the alignment: its short side is ``input_size * min_scale`` rounded up to
    a multiple of 64 and its long side keeps the aspect, rounded up likewise; other scales multiply both by
    ``scale / min_scale`` (truncated). So ``input_size`` 416 runs at a short side of 448.

    Args:
        height, width: image size in pixels.
        input_size: the model's training input size (the reference's ``DATASET.INPUT_SIZE``).
        scale: this test scale.
        min_scale: the smallest test scale of the run.

    Returns:
        The frame (input size, centre and box).
    """
    if height < 1 or width < 1 or input_size < 1 or scale <= 0 or min_scale <= 0:
        raise ValueError(f"need a non-empty image and positive sizes and scales, got {height}x{width}, "
                         f"input_size {input_size}, scale {scale}, min_scale {min_scale}")
    short_min = _align_up(min_scale * input_size)
    short = int(short_min * scale / min_scale)
    center = (int(width / 2.0 + 0.5), int(height / 2.0 + 0.5))
    if width < height:
        long = int(_align_up(short_min / width * height) * scale / min_scale)
        box = (width / _BOX_UNIT, long / short * width / _BOX_UNIT)
        return AlignedFrame(width=short, height=long, center=center, box=box)
    long = int(_align_up(short_min / height * width) * scale / min_scale)
    box = (long / short * height / _BOX_UNIT, height / _BOX_UNIT)
    return AlignedFrame(width=long, height=short, center=center, box=box)


def box_affine(
    center: Tuple[float, float], box_width: float, out_size: Tuple[int, int], inverse: bool = False
) -> np.ndarray:
    """The similarity taking a box of width ``box_width * 200`` around ``center`` onto an output of
    ``out_size`` (width, height), centre onto centre; ``inverse`` gives the map back.

    As the reference does, the transform is solved from three point pairs held in float32: the centres,
    the points half a box width above them, and the points completing right angles there.

    Returns:
        (2, 3) float64 affine matrix.
    """
    half_box = box_width * _BOX_UNIT * 0.5
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = (center[0], center[1] - half_box)
    dst[0] = (out_size[0] * 0.5, out_size[1] * 0.5)
    dst[1] = (out_size[0] * 0.5, out_size[1] * 0.5 - out_size[0] * 0.5)
    for points in (src, dst):
        up = points[0] - points[1]  # float32 arithmetic, as the reference's
        points[2] = points[1] + np.array([-up[1], up[0]], np.float32)
    if inverse:
        src, dst = dst, src
    # Each output coordinate is an affine function of the input point: solve [x y 1] @ coeffs = out.
    design = np.concatenate((src.astype(np.float64), np.ones((3, 1))), axis=1)
    return np.linalg.solve(design, dst.astype(np.float64)).T


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine, computed the way OpenCV's ``warpAffine`` does before sampling."""
    m = np.asarray(matrix, np.float64)
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    det = 1.0 / det if det != 0 else 0.0
    a00, a11 = m[1, 1] * det, m[0, 0] * det
    a01, a10 = m[0, 1] * -det, m[1, 0] * -det
    b0 = -a00 * m[0, 2] - a01 * m[1, 2]
    b1 = -a10 * m[0, 2] - a11 * m[1, 2]
    return np.array([[a00, a01, b0], [a10, a11, b1]])


def warp_image(image: torch.Tensor, image_to_input: np.ndarray, out_size: Tuple[int, int]) -> torch.Tensor:
    """The reference's ``cv2.warpAffine(image, M, out_size)`` (bilinear, black border) on uint8 images.

    For every output pixel OpenCV rounds the source position to 1/32 pixel in integer arithmetic and
    blends the four neighbours with integer weights ``(32 - fx)(32 - fy)`` ..., rounding half up;
    neighbours outside the image count as black.

    Args:
        image: (C, H, W) uint8 tensor, any device.
        image_to_input: (2, 3) affine from image to output coordinates (pixel centres at integers).
        out_size: (width, height) of the output.

    Returns:
        (C, height, width) uint8 tensor on the image's device.
    """
    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(f"expected a (C, H, W) uint8 image, got {tuple(image.shape)} {image.dtype}")
    inv = invert_affine(image_to_input)
    width, height = out_size
    xs, ys = np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    scale = float(1 << _COORD_BITS)
    half_step = 1 << (_COORD_BITS - _FRACTION_BITS - 1)  # rounds the 1/1024 positions to the nearest 1/32
    # OpenCV rounds the column terms once per column and the row terms once per row, then adds them.
    col_x = np.rint(inv[0, 0] * xs * scale).astype(np.int64)
    col_y = np.rint(inv[1, 0] * xs * scale).astype(np.int64)
    row_x = np.rint((inv[0, 1] * ys + inv[0, 2]) * scale).astype(np.int64) + half_step
    row_y = np.rint((inv[1, 1] * ys + inv[1, 2]) * scale).astype(np.int64) + half_step
    shift = _COORD_BITS - _FRACTION_BITS
    device = image.device
    fx = torch.from_numpy((row_x[:, None] + col_x[None, :]) >> shift).to(device)
    fy = torch.from_numpy((row_y[:, None] + col_y[None, :]) >> shift).to(device)
    return _blend_fixed_point(image, fx, fy)


def _blend_fixed_point(image: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """Bilinear blend at positions ``fx, fy`` (out_h, out_w) int64 in 1/32 pixel of ``image`` (C, H, W)."""
    channels, height, width = image.shape
    steps = 1 << _FRACTION_BITS
    x0, ax = fx >> _FRACTION_BITS, fx & (steps - 1)
    y0, ay = fy >> _FRACTION_BITS, fy & (steps - 1)
    flat = image.reshape(channels, -1).to(torch.int64)
    total = torch.zeros((channels,) + tuple(fx.shape), dtype=torch.int64, device=image.device)
    for dy, wy in ((0, steps - ay), (1, ay)):
        for dx, wx in ((0, steps - ax), (1, ax)):
            x, y = x0 + dx, y0 + dy
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            index = (y.clamp(0, height - 1) * width + x.clamp(0, width - 1)).view(-1)
            pixels = flat[:, index].view_as(total) * inside
            total += pixels * (wx * wy)
    # Weights sum to 32 * 32; OpenCV scales them to 1 << 15 and rounds half up. (Its saturated weight
    # 32767 + 1 for a position exactly on a pixel gives the same value.)
    weight_shift = 2 * _FRACTION_BITS
    return ((total + (1 << (weight_shift - 1))) >> weight_shift).to(torch.uint8)
