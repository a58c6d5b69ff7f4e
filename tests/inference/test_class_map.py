"""The class map from low-resolution logits equals argmax of the bilinearly upsampled logits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtl_ehrnet.inference.class_map import upsampled_argmax


def _reference(logits: torch.Tensor, out_hw: tuple, scale: tuple) -> torch.Tensor:
    axes = []
    for n_out, n_in, s in zip(out_hw, logits.shape[-2:], scale):
        u = (torch.arange(n_out, dtype=torch.float32) + 0.5) * s - 0.5
        axes.append((2 * u + 1) / n_in - 1)
    gy, gx = torch.meshgrid(axes[0], axes[1], indexing="ij")
    grid = torch.stack((gx, gy), dim=-1)[None]
    return F.grid_sample(logits[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0].argmax(0)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("in_hw, out_hw", [((24, 32), (96, 128)), ((16, 40), (61, 157)), ((8, 8), (20, 33))])
def test_equals_upsample_then_argmax(in_hw: tuple, out_hw: tuple, channels_last: bool) -> None:
    torch.manual_seed(0)
    coarse = torch.randn(1, 7, in_hw[0] // 4 + 1, in_hw[1] // 4 + 1) * 3
    logits = F.interpolate(coarse, size=in_hw, mode="bilinear", align_corners=False)[0]  # regions, as a trained model's
    if channels_last:  # classes innermost, as a channels-last network returns them
        logits = logits.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    scale = (in_hw[0] / out_hw[0] * 0.9, in_hw[1] / out_hw[1] * 0.9)  # the padded map is larger than the image
    got = upsampled_argmax(logits, out_hw, scale)
    assert got.dtype == torch.int64 and got.shape == out_hw
    assert torch.equal(got, _reference(logits, out_hw, scale))


def test_one_class_everywhere() -> None:
    logits = torch.zeros(3, 5, 6)
    logits[2] = 1
    assert torch.equal(upsampled_argmax(logits, (17, 23), (0.25, 0.25)), torch.full((17, 23), 2))
