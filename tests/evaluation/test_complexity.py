"""Params and MACs: exact on hand-computed layers, pinned on the presets (DESIGN section 3)."""
import pytest
import torch
from torch import nn

from evaluation import complexity
from mtl_ehrnet import create_model

# DESIGN.md section 3: true params and MACs of the public reference at native input.
TRUE_COUNTS = {
    "pose_h0": (19.73e6, 23.96e9),
    "pose_h-1": (13.00e6, 13.13e9),
    "pose_h-2": (8.26e6, 7.03e9),
    "pose_h-3": (5.36e6, 3.76e9),
    "pose_h-4": (2.76e6, 1.81e9),
}


def _meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return create_model(name)


def test_hand_computed_conv_and_transposed_conv() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ConvTranspose2d(8, 4, 4, 2, 1, bias=False))
    counts = complexity(model, (32, 32))
    conv = 8 * 3 * 9 * 32 * 32
    deconv = 8 * 4 * 16 * 32 * 32  # each input pixel scatters a 4x4 kernel: the true transposed-conv work
    assert counts["macs"] == conv + deconv
    assert counts["flops"] == 2 * counts["macs"]
    assert counts["params"] == 8 * 3 * 9 + 8 * 4 * 16


@pytest.mark.parametrize("name", sorted(TRUE_COUNTS))
def test_pose_presets_match_true_counts(name: str) -> None:
    params, macs = TRUE_COUNTS[name]
    counts = complexity(_meta(name))
    assert counts["params"] == pytest.approx(params, rel=0.03)
    assert counts["macs"] == pytest.approx(macs, rel=0.05)


def test_higherhrnet_w32_counts() -> None:
    counts = complexity(_meta("higherhrnet_w32"), 512)
    assert counts["params"] == pytest.approx(28.6e6, rel=0.01)
    assert counts["macs"] == pytest.approx(46.2e9, rel=0.05)


def test_joint_model_costs_at_most_065_of_separate_models() -> None:
    mtl, pose, seg = (complexity(_meta(n), 512)["macs"] for n in ("mtl_h0", "pose_h0", "seg_h0"))
    assert mtl <= 0.65 * (pose + seg)


def test_counting_leaves_training_mode_alone() -> None:
    model = create_model("pose_h-4").train()
    complexity(model, 64)
    assert model.training
    with pytest.raises(ValueError, match="input_size"):
        complexity(nn.Conv2d(3, 3, 1))
