"""One affine for image, keypoints, masks and labels; flip; letterbox."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_ehrnet.data import COCO_FLIP_INDEX, SAMPLE_KEYS, RawSample, TestTransform, TrainTransform
from mtl_ehrnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, as_hw


def _person(x: float, y: float, spread: float = 6.0) -> np.ndarray:
    """17 labelled joints around (x, y): left joints at +x (a person facing the camera)."""
    kp = np.zeros((17, 3), dtype=np.float32)
    for k in range(17):
        side = 0 if k == 0 else (1 if k % 2 == 1 else -1)
        kp[k] = [x + side * spread, y + (k // 2) * 2, 2]
    return kp


def _expected(sample, points: np.ndarray, stride: int) -> np.ndarray:
    affine = sample["affine"].double().numpy()
    moved = points @ affine[:, :2].T + affine[:, 2]
    return np.rint((moved + 0.5) / stride - 0.5).astype(int)


@pytest.mark.parametrize("trial", range(6))
def test_affine_round_trip_keypoint_lands_on_heatmap_peak(trial):
    rng = np.random.default_rng(trial)
    h, w = 90, 120
    x, y = rng.uniform(40, 80), rng.uniform(30, 60)
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255  # bright dot
    kp = np.zeros((1, 17, 3), dtype=np.float32)
    kp[0, 0] = [round(x), round(y), 2]
    torch.manual_seed(trial)
    sample = TrainTransform(64, flip_prob=0.5)(RawSample(image=image, image_id=7, keypoints=kp))
    for key, stride in (("heatmaps", 2), ("heatmaps_lr", 4)):
        ex, ey = _expected(sample, kp[0, :1, :2].astype(np.float64), stride)[0]
        if not (0 <= ex < 64 // stride and 0 <= ey < 64 // stride):
            continue
        peak = np.unravel_index(int(sample[key][0].argmax()), sample[key][0].shape)
        assert peak == (ey, ex) and sample[key][0].max() == 1.0
    # The image went through the same affine: the dot is where the keypoint went.
    ex, ey = _expected(sample, kp[0, :1, :2].astype(np.float64), 1)[0]
    if 1 <= ex < 63 and 1 <= ey < 63:
        brightness = sample["image"].sum(0)
        assert brightness[ey, ex] > brightness.mean() + 3 * brightness.std()
    lr = sample["joints"][0, 0]
    if lr[1]:
        assert lr[0] == _expected(sample, kp[0, :1, :2].astype(np.float64), 4)[0] @ [1, 16]


def test_flip_swaps_left_and_right():
    kp = _person(30.0, 20.0)[None]
    raw = RawSample(image=np.zeros((64, 64, 3), np.uint8), image_id=1, keypoints=kp)
    plain = TrainTransform(64, scale_range=(1, 1), max_rotation=0, max_translate=0, flip_prob=0.0)(raw)
    flipped = TrainTransform(64, scale_range=(1, 1), max_rotation=0, max_translate=0, flip_prob=1.0)(raw)
    def peak(s, k):
        return np.unravel_index(int(s["heatmaps"][k].argmax()), s["heatmaps"][k].shape)
    for k, mirror in enumerate(COCO_FLIP_INDEX):
        y, x = peak(plain, mirror)
        assert peak(flipped, k) == (y, 31 - x)  # left joint k sits where its right twin is mirrored
    # A mirrored person facing the camera still faces it: their left stays on the image right.
    left_shoulder, right_shoulder = 5, 6
    assert peak(plain, left_shoulder)[1] > peak(plain, right_shoulder)[1]
    assert peak(flipped, left_shoulder)[1] > peak(flipped, right_shoulder)[1]
    assert peak(flipped, left_shoulder) == (peak(plain, right_shoulder)[0], 31 - peak(plain, right_shoulder)[1])


def test_masks_cover_crowd_and_outside_and_seg_ignores_padding():
    image = np.zeros((40, 80, 3), np.uint8)
    ignore = np.zeros((40, 80), bool)
    ignore[:, :20] = True  # a crowd on the left quarter
    seg = np.full((40, 80), 3, np.uint8)
    raw = RawSample(image=image, image_id=2, keypoints=np.zeros((0, 17, 3), np.float32), ignore=ignore, seg=seg)
    sample = TestTransform(80)(raw)  # letterbox: 80x40 content centred in 80x80
    masks = sample["masks"].numpy()
    assert masks.shape == (40, 40)
    assert (masks[10:30, :10] == 0).all() and (masks[10:30, 11:] == 1).all()
    assert (masks[:10] == 0).all() and (masks[30:] == 0).all()  # padding
    assert (sample["masks_lr"].numpy()[5:15, 6:] == 1).all()
    labels = sample["seg"].numpy()
    assert (labels[:20] == 255).all() and (labels[20:60] == 3).all() and (labels[60:] == 255).all()


def test_sample_contract_and_normalisation():
    raw = RawSample(image=np.full((32, 32, 3), 128, np.uint8), image_id=5, seg=np.zeros((32, 32), np.uint8))
    sample = TestTransform((32, 48))(raw)
    assert set(sample) == set(SAMPLE_KEYS)
    expected = {"image": (3, 32, 48), "heatmaps": (17, 16, 24), "heatmaps_lr": (17, 8, 12), "masks": (16, 24),
                "masks_lr": (8, 12), "joints": (30, 17, 2), "seg": (32, 48), "image_id": (), "has_pose": ()}
    for key, shape in expected.items():
        assert tuple(sample[key].shape) == shape, key
    assert sample["joints"].dtype == torch.int64 and sample["seg"].dtype == torch.uint8
    assert sample["has_pose"].dtype == torch.bool and not sample["has_pose"] and sample["has_seg"]
    centre = sample["image"][:, 16, 24].numpy()
    np.testing.assert_allclose(centre, (128 / 255 - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)


def test_training_is_reproducible_under_torch_seed():
    raw = RawSample(image=np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8), image_id=1,
                    keypoints=_person(35, 20)[None])
    torch.manual_seed(4)
    a = TrainTransform(48)(raw)
    torch.manual_seed(4)
    b = TrainTransform(48)(raw)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("size", [30, (32, 30), 0])
def test_bad_input_size(size):
    with pytest.raises(ValueError, match="divisible by 4"):
        as_hw(size)


def test_bad_flip_index():
    with pytest.raises(ValueError, match="flip_index"):
        TrainTransform(32, flip_index=[0, 1, 1])


def test_letterbox_keeps_every_keypoint_and_maps_it_through_the_affine():
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :4] = [[0, 0, 2], [99, 49, 2], [50, 25, 1], [10, 40, 2]]
    sample = TestTransform(64)(RawSample(image=np.zeros((50, 100, 3), np.uint8), image_id=3, keypoints=kp))
    expected = _expected(sample, kp[0, :4, :2].astype(np.float64), 4)
    for k, (x, y) in enumerate(expected):
        heat = sample["heatmaps_lr"][k]
        assert heat[y, x] == 1.0 and heat.max() == 1.0
    assert sample["joints"][0, :4, 1].tolist() == [1, 1, 1, 1] and sample["joints"][0, 4:, 1].sum() == 0


@pytest.mark.parametrize("option", [{"sigma": 0.0}, {"max_rotation": -5.0}, {"max_translate": -0.1}, {"flip_prob": 1.5},
                                    {"scale_range": (1.5, 0.75)}])
def test_train_transform_refuses_bad_settings_by_name(option) -> None:  # noqa: ANN001
    name = next(iter(option))
    with pytest.raises(ValueError, match=name):
        TrainTransform(64, **option)
