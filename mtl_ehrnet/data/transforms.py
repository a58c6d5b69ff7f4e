"""Geometric transforms that turn a :class:`RawSample` into a training sample (HigherHRNet recipe).

One affine (scale, rotation, translation, optional mirror) is built per sample and applied to the
image, the keypoints, the loss mask at each target resolution and the segmentation labels, so every
output stays aligned with the input (DESIGN.md section 4). Matrices work in *corner* coordinates
(pixel ``i`` spans ``[i, i + 1)``), the convention of Pillow's ``Image.transform`` and of
``grid_sample(align_corners=False)`` (the warps live in :mod:`mtl_ehrnet.data.warp`); keypoints (pixel
centre at integer ``x``) are shifted by 0.5 on the way in and out. A stride-``s`` map is the input
map scaled by ``1/s`` in corner coordinates.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mtl_ehrnet.data.sample import IGNORE_INDEX, RawSample
from mtl_ehrnet.data.skeleton import COCO_FLIP_INDEX, NUM_KEYPOINTS, check_flip_index
from mtl_ehrnet.data.targets import heatmap_targets, joint_targets
from mtl_ehrnet.data.warp import IMAGENET_MEAN, IMAGENET_STD, warp_image, warp_labels, warp_mask

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TestTransform", "TrainTransform", "affine_matrix", "as_hw", "at_stride",
           "build_sample", "transform_points"]

SizeLike = Union[int, Tuple[int, int]]


def as_hw(size: SizeLike) -> Tuple[int, int]:
    """Turns an input size (``S`` or ``(H, W)``) into ``(H, W)``, both multiples of 4.

    Raises:
        ValueError: naming the size when it is not positive or not divisible by 4 (the targets live
            at strides 2 and 4).
    """
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height <= 0 or width <= 0 or height % 4 or width % 4:
        raise ValueError(f"input size {size} must be positive and divisible by 4 (targets at stride 4)")
    return int(height), int(width)


def affine_matrix(
    center: Tuple[float, float],
    source_size: float,
    out_hw: Tuple[int, int],
    rotation_deg: float = 0.0,
    flip: bool = False,
) -> np.ndarray:
    """The 3x3 matrix taking source corner coordinates to output corner coordinates.

    Args:
        center: source point (x, y) that lands on the output centre.
        source_size: source length that spans the output's shorter side.
        out_hw: output (H, W).
        rotation_deg: counter-clockwise rotation of the content.
        flip: mirror the output horizontally.

    Returns:
        float64 (3, 3).
    """
    out_h, out_w = out_hw
    scale = min(out_h, out_w) / source_size
    angle = math.radians(rotation_deg)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    to_origin = np.array([[1, 0, -center[0]], [0, 1, -center[1]], [0, 0, 1]], dtype=np.float64)
    rotate_scale = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]], dtype=np.float64)
    to_out = np.array([[1, 0, out_w / 2], [0, 1, out_h / 2], [0, 0, 1]], dtype=np.float64)
    matrix = to_out @ rotate_scale @ to_origin
    if flip:
        matrix = np.array([[-1, 0, out_w], [0, 1, 0], [0, 0, 1]], dtype=np.float64) @ matrix
    return matrix


def at_stride(matrix: np.ndarray, stride: int) -> np.ndarray:
    """The same affine, ending on a map ``stride`` times smaller than the input."""
    return np.diag([1.0 / stride, 1.0 / stride, 1.0]) @ matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Moves (..., 2) keypoint coordinates (pixel centre at integer x) through a corner-space affine."""
    corners = points + 0.5
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    return moved - 0.5


def build_sample(
    raw: RawSample,
    matrix: np.ndarray,
    out_hw: Tuple[int, int],
    *,
    flip_index: Optional[np.ndarray] = None,
    num_joints: int = NUM_KEYPOINTS,
    max_people: int = 30,
    sigma: float = 2.0,
) -> Dict[str, torch.Tensor]:
    """Applies one affine to everything in ``raw`` and builds the training sample.

    Args:
        raw: the loaded image and labels.
        matrix: (3, 3) source-to-input affine in corner coordinates.
        out_hw: input (H, W), multiples of 4.
        flip_index: joint permutation to apply (the affine mirrors); ``None`` for no mirror.
        num_joints: K, used for the empty targets of samples without pose labels.
        max_people: rows of ``joints``.
        sigma: heatmap Gaussian sigma at both resolutions.

    Returns:
        The sample dict described in :mod:`mtl_ehrnet.data.sample`.
    """
    height, width = out_hw
    half, quarter = (height // 2, width // 2), (height // 4, width // 4)
    has_pose = raw.keypoints is not None
    has_seg = raw.seg is not None
    sample: Dict[str, torch.Tensor] = {
        "image": warp_image(raw.image, matrix, out_hw),
        "has_pose": torch.tensor(has_pose),
        "has_seg": torch.tensor(has_seg),
    }
    if has_pose:
        keypoints = raw.keypoints.astype(np.float64)
        if flip_index is not None:
            keypoints = keypoints[:, flip_index]
        if keypoints.shape[1] != num_joints:
            raise ValueError(f"image {raw.image_id}: {keypoints.shape[1]} keypoints, expected {num_joints}")
        for key, stride, hw in (("heatmaps", 2, half), ("heatmaps_lr", 4, quarter)):
            on_map = at_stride(matrix, stride)
            moved = np.concatenate([transform_points(keypoints[..., :2], on_map), keypoints[..., 2:]], axis=-1)
            sample[key] = torch.from_numpy(heatmap_targets(moved, *hw, sigma=sigma))
            sample["masks" if stride == 2 else "masks_lr"] = warp_mask(raw.ignore, (raw.height, raw.width), on_map, hw)
            if stride == 4:
                sample["joints"] = torch.from_numpy(joint_targets(moved, *hw, max_people=max_people))
    else:
        # np.zeros gets lazily zeroed pages from calloc; torch.zeros would write every byte.
        sample["heatmaps"] = torch.from_numpy(np.zeros((num_joints, *half), dtype=np.float32))
        sample["heatmaps_lr"] = torch.from_numpy(np.zeros((num_joints, *quarter), dtype=np.float32))
        sample["masks"] = torch.from_numpy(np.zeros(half, dtype=np.float32))
        sample["masks_lr"] = torch.from_numpy(np.zeros(quarter, dtype=np.float32))
        sample["joints"] = torch.from_numpy(np.zeros((max_people, num_joints, 2), dtype=np.int64))
    # uint8 (255 = ignore): an eighth of int64's bytes to collate, pin and copy; the loss widens it on the device.
    if has_seg:
        sample["seg"] = torch.from_numpy(warp_labels(raw.seg, matrix, out_hw))
    else:
        sample["seg"] = torch.full(out_hw, IGNORE_INDEX, dtype=torch.uint8)
    sample["image_id"] = torch.tensor(raw.image_id, dtype=torch.int64)
    # Pixel-centre form of the affine, so callers can map predictions back without the 0.5 shifts.
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    pixel_affine = np.linalg.inv(shift) @ matrix @ shift
    sample["affine"] = torch.from_numpy(pixel_affine[:2].astype(np.float32))
    sample["orig_size"] = torch.tensor([raw.height, raw.width], dtype=torch.int64)
    return sample


class TrainTransform:
    """HigherHRNet training augmentation: random scale, rotation, translation and horizontal flip.

    Randomness comes from torch's global generator, which DataLoader seeds per worker from the main
    process seed, so ``torch.manual_seed`` makes a whole epoch reproducible.

    Args:
        input_size: S or (H, W), multiples of 4.
        scale_range: factor on the short side of the source window (HigherHRNet: 0.75..1.5).
        max_rotation: degrees, uniform in +-max_rotation.
        max_translate: translation as a fraction of the source window, uniform in +-max_translate.
        flip_prob: probability of a horizontal mirror.
        flip_index: joint permutation under the mirror (COCO by default).
        num_joints: K.
        max_people: rows of the ``joints`` target.
        sigma: heatmap sigma at both resolutions.
    """

    def __init__(
        self,
        input_size: SizeLike = 512,
        *,
        scale_range: Tuple[float, float] = (0.75, 1.5),
        max_rotation: float = 30.0,
        max_translate: float = 0.2,
        flip_prob: float = 0.5,
        flip_index: Sequence[int] = COCO_FLIP_INDEX,
        num_joints: int = NUM_KEYPOINTS,
        max_people: int = 30,
        sigma: float = 2.0,
    ) -> None:
        self.out_hw = as_hw(input_size)
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range {scale_range} must satisfy 0 < low <= high")
        if sigma <= 0 or max_rotation < 0 or max_translate < 0 or not 0 <= flip_prob <= 1:
            raise ValueError("need sigma > 0, max_rotation >= 0, max_translate >= 0 and 0 <= flip_prob <= 1; "
                             f"got sigma={sigma}, "
                             f"max_rotation={max_rotation}, max_translate={max_translate}, flip_prob={flip_prob}")
        self.scale_range = scale_range
        self.max_rotation = max_rotation
        self.max_translate = max_translate
        self.flip_prob = flip_prob
        self.flip_index = check_flip_index(flip_index, num_joints)
        self.num_joints = num_joints
        self.max_people = max_people
        self.sigma = sigma

    def settings(self) -> Dict[str, Any]:
        """The augmentation settings as plain JSON values, for a run's record."""
        return {"scale_range": list(self.scale_range), "max_rotation": self.max_rotation,
                "max_translate": self.max_translate,
                "flip_prob": self.flip_prob, "sigma": self.sigma}

    def sample_matrix(self, height: int, width: int) -> Tuple[np.ndarray, bool]:
        """Draws one random affine for a (height, width) source; returns it and whether it mirrors."""
        u = torch.rand(5).double().numpy()
        low, high = self.scale_range
        window = min(height, width) * (low + (high - low) * u[0])
        rotation = (2 * u[1] - 1) * self.max_rotation
        center = (width / 2 + (2 * u[2] - 1) * self.max_translate * window,
                  height / 2 + (2 * u[3] - 1) * self.max_translate * window)
        flip = bool(u[4] < self.flip_prob)
        return affine_matrix(center, window, self.out_hw, rotation, flip), flip

    def __call__(self, raw: RawSample) -> Dict[str, torch.Tensor]:
        matrix, flip = self.sample_matrix(raw.height, raw.width)
        return build_sample(raw, matrix, self.out_hw, flip_index=self.flip_index if flip else None,
                            num_joints=self.num_joints, max_people=self.max_people, sigma=self.sigma)


class TestTransform:
    """Deterministic letterbox for validation: the whole image scaled to fit, centred, black padding.

    Args:
        input_size: S or (H, W), multiples of 4.
        num_joints: K.
        max_people: rows of the ``joints`` target.
        sigma: heatmap sigma at both resolutions.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, input_size: SizeLike = 512, *, num_joints: int = NUM_KEYPOINTS,
                 max_people: int = 30, sigma: float = 2.0) -> None:
        self.out_hw = as_hw(input_size)
        self.num_joints = num_joints
        self.max_people = max_people
        self.sigma = sigma

    def __call__(self, raw: RawSample) -> Dict[str, torch.Tensor]:
        out_h, out_w = self.out_hw
        fit = min(out_h / raw.height, out_w / raw.width)
        # The output's short side spans min(out_h, out_w) / fit source pixels.
        matrix = affine_matrix((raw.width / 2, raw.height / 2), min(out_h, out_w) / fit, self.out_hw)
        return build_sample(raw, matrix, self.out_hw, num_joints=self.num_joints,
                            max_people=self.max_people, sigma=self.sigma)
