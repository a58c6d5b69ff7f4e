"""The warps: the source window is exact, identity is identity, the mask is the source's footprint."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtl_ehrnet.data.cityscapes import _TRAIN_ID_TABLE, to_train_ids
from mtl_ehrnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, affine_matrix
from mtl_ehrnet.data.warp import sampling_grid, source_window, warp_image, warp_mask


def _whole_source_warp(image: np.ndarray, matrix: np.ndarray, out_hw) -> torch.Tensor:
    source = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None] / 255
    warped = F.grid_sample(source, sampling_grid(matrix, image.shape[:2], out_hw), align_corners=False)[0]
    return (warped - torch.from_numpy(IMAGENET_MEAN)[:, None, None]) / torch.from_numpy(IMAGENET_STD)[:, None, None]


@pytest.mark.parametrize("trial", range(8))
def test_window_crop_changes_nothing(trial):
    rng = np.random.default_rng(trial)
    image = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    center = (rng.uniform(-20, 150), rng.uniform(-20, 110))
    matrix = affine_matrix(center, rng.uniform(20, 200), (48, 64), rng.uniform(-45, 45), bool(trial % 2))
    top, bottom, left, right = source_window(matrix, (90, 130), (48, 64))
    assert 0 <= top < bottom <= 90 and 0 <= left < right <= 130
    np.testing.assert_allclose(warp_image(image, matrix, (48, 64)), _whole_source_warp(image, matrix, (48, 64)),
                               atol=2e-4)  # grid rounding differs by ~1e-5 px


def test_identity_keeps_every_pixel():
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    warped = warp_image(image, np.eye(3), (32, 48))
    assert warped.shape == (3, 32, 48) and warped.dtype == torch.float32 and warped.is_contiguous()
    expected = (image.transpose(2, 0, 1) / 255.0 - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    np.testing.assert_allclose(warped.numpy(), expected, atol=1e-5)


def test_mask_is_the_footprint_minus_the_ignored_part():
    # Half scale: a 40x80 source lands on the top-left 20x40 of a 32x48 map.
    half = np.diag([0.5, 0.5, 1.0])
    mask = warp_mask(None, (40, 80), half, (32, 48)).numpy()
    assert mask.dtype == np.float32
    assert (mask[:20, :40] == 1).all() and (mask[20:] == 0).all() and (mask[:, 40:] == 0).all()
    ignore = np.zeros((40, 80), bool)
    ignore[:, :20] = True
    mask = warp_mask(ignore, (40, 80), half, (32, 48)).numpy()
    assert (mask[:20, :10] == 0).all() and (mask[:20, 10:40] == 1).all()


def test_uint8_label_map_goes_through_one_table():
    ids = np.random.default_rng(0).integers(0, 34, (64, 96)).astype(np.uint8)
    assert np.array_equal(to_train_ids(ids), _TRAIN_ID_TABLE[ids]) and to_train_ids(ids).dtype == np.uint8
    assert np.array_equal(to_train_ids(ids[:, ::3]), _TRAIN_ID_TABLE[ids[:, ::3]])
    ids[5, 7] = 34
    with pytest.raises(ValueError, match=r"label ids \[34\]"):
        to_train_ids(ids)
