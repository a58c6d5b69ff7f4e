"""Predictor: coordinates and class maps come back in the original image's frame, any aspect."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mtl_ehrnet
from mtl_ehrnet import Predictor
from mtl_ehrnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD


class FakeModel(nn.Module):
    """Honours the output contract with maps read off the image: red = every joint's heatmap,
    10 * green = every joint's tag, blue > 0.5 = class 1."""

    input_size = (96, 96)
    tasks = ("pose", "seg")

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> dict:
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError("not a multiple of 32")
        rgb = images * self.std + self.mean
        red, green, blue = rgb[:, :1], rgb[:, 1:2], rgb[:, 2:3]
        quarter = F.avg_pool2d(blue, 4)
        return {
            "heatmaps": F.avg_pool2d(red, 2).expand(-1, 17, -1, -1),
            "heatmaps_lr": F.avg_pool2d(red, 4).expand(-1, 17, -1, -1),
            "tags": 10 * F.avg_pool2d(green, 4).expand(-1, 17, -1, -1),
            "seg": torch.cat((0.5 - quarter, quarter - 0.5), dim=1),
        }


PEOPLE = np.array([[41.3, 60.7], [130.6, 95.2], [215.8, 47.4]])  # (x, y), pixel centres at integers


def make_image(height: int = 150, width: int = 260) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    for (x, y), tag in zip(PEOPLE, (0.2, 0.5, 0.8)):
        d2 = (xx - x) ** 2 + (yy - y) ** 2
        image[..., 0] = np.maximum(image[..., 0], np.exp(-d2 / (2 * 6.0**2)))
        image[..., 1][d2 < 20**2] = tag
    image[40:110, 30:200, 2] = 1.0
    return np.round(image * 255).astype(np.uint8)


def true_class_map(height: int = 150, width: int = 260) -> np.ndarray:
    truth = np.zeros((height, width), np.int64)
    truth[40:110, 30:200] = 1
    return truth


def check(prediction, tol: float = 0.35) -> None:
    assert prediction.poses.shape == (3, 17, 3)
    order = np.argsort(prediction.poses[:, 0, 0])
    error = np.abs(prediction.poses[order, :, :2] - PEOPLE[:, None, :])
    assert error.max() < tol, f"max coordinate error {error.max():.2f} px"
    truth = true_class_map()
    assert prediction.seg.shape == truth.shape and prediction.seg.dtype == np.int64
    wrong = np.argwhere(prediction.seg != truth)
    # Only pixels near the rectangle's border may differ (one stride-4 cell is 6 image pixels here).
    near_border = (np.minimum(np.abs(wrong[:, 0] - 40), np.abs(wrong[:, 0] - 110)) <= 6) | (
        np.minimum(np.abs(wrong[:, 1] - 30), np.abs(wrong[:, 1] - 200)) <= 6)
    assert near_border.all()
    assert len(wrong) < 0.02 * truth.size


def test_non_square_image_maps_back_to_image_coordinates() -> None:
    check(Predictor(FakeModel())(make_image()))


@pytest.mark.parametrize("options", [{"flip": True}, {"scales": (1.0, 1.5)}, {"flip": True, "scales": (1.0, 0.75)}])
def test_flip_and_multi_scale(options: dict) -> None:
    check(Predictor(FakeModel(), **options)(make_image()))


def test_batch_of_mixed_sizes_equals_one_by_one() -> None:
    predictor = Predictor(FakeModel(), batch_size=2)
    portrait = np.ascontiguousarray(make_image(260, 150)[:, ::-1])
    images = [make_image(), portrait, make_image()]
    batched = predictor(images)
    assert len(batched) == 3
    for image, result in zip(images, batched):
        alone = predictor(image)
        np.testing.assert_allclose(result.poses, alone.poses, atol=1e-4)
        np.testing.assert_array_equal(result.seg, alone.seg)
    check(batched[2])


def test_pillow_image_and_bad_input() -> None:
    from PIL import Image

    check(Predictor(FakeModel())(Image.fromarray(make_image())))
    with pytest.raises(ValueError):
        Predictor(FakeModel())(np.zeros((10, 10), np.uint8))


def test_real_multi_task_model_end_to_end() -> None:
    model = mtl_ehrnet.create_model("mtl_h-4")
    result = Predictor(model, input_size=64, flip=True, grouping={"max_people": 5})(np.zeros((70, 110, 3), np.uint8))
    assert result.seg.shape == (70, 110)
    assert result.poses.ndim == 3 and result.poses.shape[1:] == (17, 3)
    assert result.scores.shape == (result.poses.shape[0],)
    assert result.seg.max() < model.config.num_classes


def test_a_batch_of_different_sizes_is_padded_with_black_after_each_image() -> None:
    predictor = Predictor(FakeModel(), input_size=96, batch_size=2)
    images = [torch.full((3, 60, 80), 200.0), torch.full((3, 90, 60), 50.0)]  # resized to 96x128 and 144x96
    batch, factors = predictor._prepare(
        [(im - predictor._mean) / predictor._std for im in images], 1.0)
    assert batch.shape == (2, 3, 160, 128) and factors == [(1.6, 1.6), (1.6, 1.6)]
    rgb = batch * predictor._std + predictor._mean
    torch.testing.assert_close(rgb[0, :, :96, :128], torch.full((3, 96, 128), 200.0))
    torch.testing.assert_close(rgb[1, :, :144, :96], torch.full((3, 144, 96), 50.0))
    black = torch.zeros(())
    for margin in (rgb[0, :, 96:], rgb[1, :, 144:], rgb[1, :, :144, 96:]):
        assert margin.numel() and torch.allclose(margin, black.expand_as(margin), atol=1e-4)
