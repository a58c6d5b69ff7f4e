"""Predictor(mode="reference"): HigherHRNet's resize rule, warp, flip averaging, coordinates back, grouping
decisions, and ``evaluate --reference-pipeline`` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mtl_ehrnet import Predictor, create_model
from mtl_ehrnet.checkpoint import save_checkpoint
from mtl_ehrnet.cli import main
from mtl_ehrnet.data.skeleton import COCO_FLIP_INDEX
from mtl_ehrnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mtl_ehrnet.inference.aligned_resize import aligned_frame, warp_image
from mtl_ehrnet.inference.reference_grouping import ReferenceGrouping, group_reference


class ColourModel(nn.Module):
    """Output contract read off the image: joint k's heatmaps = ``gain[k]`` * red, every tag = 10 * green,
    class 1 where blue > 0.5."""

    tasks = ("pose", "seg")

    def __init__(self, gain: torch.Tensor = torch.ones(17)) -> None:
        super().__init__()
        self.register_buffer("gain", gain.view(1, 17, 1, 1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> dict:
        rgb = images * self.std + self.mean
        red, green, blue = rgb[:, :1], rgb[:, 1:2], rgb[:, 2:3]
        quarter = F.avg_pool2d(blue, 4)
        return {
            "heatmaps": self.gain * F.avg_pool2d(red, 2),
            "heatmaps_lr": self.gain * F.avg_pool2d(red, 4),
            "tags": 10 * F.avg_pool2d(green, 4).expand(-1, 17, -1, -1),
            "seg": torch.cat((0.5 - quarter, quarter - 0.5), dim=1),
        }


def blob_image(height: int, width: int, centre: tuple, sigma: float = 3.0) -> np.ndarray:
    """A red Gaussian blob at ``centre`` (x, y; pixel centres at integers), green 0.4 around it, blue box."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    d2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    image = np.zeros((height, width, 3))
    image[..., 0] = np.exp(-d2 / (2 * sigma**2))
    image[..., 1][d2 < 15**2] = 0.4
    image[10:40, 20:70, 2] = 1.0
    return np.round(image * 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("height", "width", "input_size", "scale", "min_scale", "expected"),
    [
        (480, 640, 512, 1.0, 1.0, (704, 512, (320, 240), 3.3)),  # landscape: long side 682.7 -> 704
        (640, 427, 512, 1.0, 1.0, (512, 768, (214, 320), 2.135)),  # portrait: 767.4 -> 768, centre rounds up
        (500, 500, 512, 1.0, 1.0, (512, 512, (250, 250), 2.5)),
        (480, 640, 416, 1.0, 1.0, (640, 448, (320, 240), 3.0 * 448 / 392)),  # 416 is not a multiple of 64
        (480, 640, 512, 2.0, 0.5, (1536, 1024, (320, 240), 3.6)),  # aligned at the smallest scale, then x4
    ],
)
def test_reference_resize_rule(height, width, input_size, scale, min_scale, expected) -> None:
    frame = aligned_frame(height, width, input_size, scale, min_scale)
    assert (frame.width, frame.height, frame.center) == expected[:3]
    assert frame.box[0] == pytest.approx(expected[3])
    smallest = aligned_frame(height, width, input_size, min_scale, min_scale)
    assert smallest.width % 64 == 0 and smallest.height % 64 == 0
    # The box keeps the aspect of the input, and the whole image fits in it.
    assert frame.box[0] / frame.box[1] == pytest.approx(frame.width / frame.height)
    assert frame.box[0] * 200 >= width - 1e-6 and frame.box[1] * 200 >= height - 1e-6


def test_warp_is_opencv_fixed_point_bilinear() -> None:
    image = torch.tensor([[[0, 1, 10, 30], [50, 51, 52, 200]]], dtype=torch.uint8)
    identity = np.array([[1.0, 0, 0], [0, 1, 0]])
    assert torch.equal(warp_image(image, identity, (4, 2)), image)
    shifted = warp_image(image, np.array([[1.0, 0, 2], [0, 1, -1]]), (4, 2))  # integer shift, black elsewhere
    assert shifted.tolist() == [[[0, 0, 50, 51], [0, 0, 0, 0]]]
    # Half a pixel: (0 + 1) / 2 rounds half up to 1 (a float warp rounding half to even gives 0).
    half = warp_image(image, np.array([[1.0, 0, 0.5], [0, 1, 0]]), (4, 2))
    assert half.tolist() == [[[0, 1, 6, 20], [25, 51, 52, 126]]]


def test_map_points_back_with_the_reference_half_pixel_offset() -> None:
    frame = aligned_frame(60, 100, 128)
    forward = frame.image_to_input()
    points = np.array([[0.0, 0.0], [61.0, 23.0], [99.0, 59.0]])
    in_input = points @ forward[:, :2].T + forward[:, 2]
    factor = frame.width / (frame.box[0] * 200)
    # A peak at input pixel j is reported at j + 0.5; back in the image that is half an input pixel off.
    back = frame.map_to_image(in_input + 0.5, (frame.width, frame.height))
    np.testing.assert_allclose(back, points + 0.5 / factor, atol=1e-4)
    # On a map half the input's size, the same box applies.
    half = frame.map_to_image((in_input + 0.5) / 2, (frame.width // 2, frame.height // 2))
    np.testing.assert_allclose(half, back, atol=1e-4)


def test_reference_mode_maps_a_peak_back_to_its_pixel() -> None:
    centre = (61.0, 23.0)
    image = blob_image(60, 100, centre)
    result = Predictor(ColourModel(), input_size=128, mode="reference")(image)
    assert result.poses.shape == (1, 17, 3)
    error = result.poses[0, :, :2] - np.array(centre)
    assert np.abs(error).max() < 0.5, f"{error}"
    assert result.scores[0] == pytest.approx(result.poses[0, :, 2].mean(), rel=1e-6)
    truth = np.zeros((60, 100), np.int64)
    truth[10:40, 20:70] = 1
    assert result.seg.shape == truth.shape and (result.seg != truth).mean() < 0.03


def test_flip_averages_joints_with_their_mirror() -> None:
    gain = torch.ones(17)
    gain[1::2] = 0.5  # left joints (odd COCO indices) at half strength, right ones and the nose at full
    image = blob_image(60, 100, (61.0, 23.0))
    plain = Predictor(ColourModel(gain), input_size=128, mode="reference")(image)
    flipped = Predictor(ColourModel(gain), input_size=128, mode="reference", flip=True)(image)
    values, flip_values = plain.poses[0, :, 2], flipped.poses[0, :, 2]
    np.testing.assert_allclose(values[1::2] / values[0], 0.5, rtol=1e-5)
    # Mirrored back with left and right swapped, each joint averages its own map and its mirror joint's.
    expected = (gain + gain[list(COCO_FLIP_INDEX)]).numpy() / 2
    np.testing.assert_allclose(flip_values / flip_values[0], expected, rtol=1e-5)
    np.testing.assert_allclose(flipped.poses[0, :, :2], plain.poses[0, :, :2], atol=1e-4)


def test_group_reference_decisions() -> None:
    heat = torch.zeros(17, 20, 30)
    tags = torch.zeros(17, 20, 30, 1)
    heat[:, 5, 6], tags[:, 5, 6] = 0.9, 1.0  # person A: every joint at (6, 5), tag 1
    heat[:, 5, 7] = 0.4  # a higher right neighbour than the left one: adjust steps right
    heat[:16, 12, 20], tags[:16, 12, 20] = 0.6, 5.0  # person B lacks the last joint ...
    heat[16, 15, 25], tags[16, 15, 25] = 0.05, 5.2  # ... found by refinement below the threshold
    people, scores = group_reference(heat, tags)
    assert people.shape == (2, 17, 3)
    a, b = people[np.argmax(scores)], people[np.argmin(scores)]
    np.testing.assert_allclose(a[0], [6 + 0.5 + 0.25, 5 + 0.5 - 0.25, 0.9])  # ties step back (up)
    np.testing.assert_allclose(b[16], [25 + 0.5 - 0.25, 15 + 0.5 - 0.25, 0.05], rtol=1e-6)
    # The score is the mean over all 17 joints before refinement (the missing joint counts 0).
    assert scores.min() == pytest.approx(0.6 * 16 / 17)
    no_refine, _ = group_reference(heat, tags, ReferenceGrouping(refine=False))
    assert (no_refine[..., 2] == 0).sum() == 1


@pytest.mark.filterwarnings("ignore:munkres")
def test_munkres_assignment_agrees_where_costs_do_not_tie() -> None:
    pytest.importorskip("munkres")
    heat = torch.zeros(17, 20, 30)
    tags = torch.zeros(17, 20, 30, 1)
    for person, (x, y, tag) in enumerate([(4, 4, 0.0), (14, 6, 3.0), (24, 15, 6.0)]):
        heat[:, y, x], tags[:, y, x] = 0.5 + 0.1 * person, tag
    scipy_people, scipy_scores = group_reference(heat, tags)
    munkres_people, munkres_scores = group_reference(heat, tags, ReferenceGrouping(assignment="munkres"))
    assert scipy_people.shape == (3, 17, 3)
    np.testing.assert_array_equal(scipy_people, munkres_people)
    np.testing.assert_array_equal(scipy_scores, munkres_scores)


def test_modes_and_options_are_checked() -> None:
    model = ColourModel()
    with pytest.raises(ValueError, match="'fast', 'reference'"):
        Predictor(model, mode="exact")
    with pytest.raises(ValueError, match="subpixel"):
        Predictor(model, mode="reference", grouping={"subpixel": "quarter"})
    with pytest.raises(ValueError, match="scale 1"):
        Predictor(model, mode="reference", scales=(0.5, 2.0))
    with pytest.raises(ValueError, match="assignment"):
        ReferenceGrouping(assignment="greedy")


def test_evaluate_reference_pipeline_on_generated_data(synth, tmp_path: Path, capsys) -> None:
    checkpoint = save_checkpoint(tmp_path / "mtl.pt", create_model("mtl_h-4"))
    out = tmp_path / "metrics.json"
    code = main([
        "evaluate", str(checkpoint), "--coco", str(synth.coco_annotations("val")), str(synth.coco_images("val")),
        "--cityscapes", str(synth.cityscapes_root), "--reference-pipeline", "--flip", "--input-size", "64",
        "--limit", "2", "--device", "cpu", "--json", str(out),
    ])
    assert code == 0
    assert "| AP | AP50 | AP75 | APM | APL | AR |" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics["pipeline"] == "reference"
    assert 0.0 <= metrics["coco"]["AP"] <= 1.0 and 0.0 <= metrics["cityscapes"]["mIoU"] <= 1.0
    assert main(["evaluate", str(checkpoint), "--coco", "a", "b", "--munkres", "--device", "cpu"]) == 1
    assert "--munkres applies to --reference-pipeline only" in capsys.readouterr().err


def test_predict_reference_pipeline(tmp_path: Path) -> None:
    image = tmp_path / "person.png"
    Image.fromarray(blob_image(60, 100, (61.0, 23.0))).save(image)
    out = tmp_path / "out"
    args = ["predict", "mtl_h-4", str(image), "--out", str(out), "--reference-pipeline", "--input-size", "64"]
    assert main([*args, "--threads", "1", "--device", "cpu", "--no-draw"]) == 0
    assert isinstance(json.loads((out / "poses.json").read_text()), list)
