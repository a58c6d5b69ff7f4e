"""Every registered model honours the output contract and trains end to end."""
from typing import Dict

import pytest
import torch
from torch import nn

from mtl_ehrnet import EfficientHRNet, create_model, list_models
from mtl_ehrnet.models.backbone import EfficientNetBackbone
from mtl_ehrnet.models.config import SHARE_POINTS

SIZE = (64, 96)


def _expected_shapes(model: EfficientHRNet, batch: int, height: int, width: int) -> Dict[str, tuple]:
    k, c = model.config.num_keypoints, model.config.num_classes
    shapes = {}
    if "pose" in model.tasks:
        shapes["heatmaps"] = (batch, k, height // 2, width // 2)
        shapes["heatmaps_lr"] = (batch, k, height // 4, width // 4)
        shapes["tags"] = (batch, k, height // 4, width // 4)
    if "seg" in model.tasks:
        shapes["seg"] = (batch, c, height // 4, width // 4)
    return shapes


def _check_trains(model: nn.Module, height: int = SIZE[0], width: int = SIZE[1]) -> Dict[str, torch.Tensor]:
    model.train()
    outputs = model(torch.randn(2, 3, height, width))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == _expected_shapes(model, 2, height, width)
    for name, value in outputs.items():
        assert torch.isfinite(value).all(), name
    loss = sum(v.square().mean() for v in outputs.values())
    loss.backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not without_grad, f"parameters without a finite gradient: {without_grad[:5]}"
    return outputs


@pytest.mark.parametrize("name", list_models())
def test_registered_model_contract(name: str) -> None:
    _check_trains(create_model(name))


@pytest.mark.parametrize("name", ["pose_h1", "mtl_h-5", "seg_h-5"])
def test_any_phi_builds(name: str) -> None:
    model = create_model(name)
    assert model.input_size[0] % 32 == 0
    _check_trains(model)


@pytest.mark.parametrize("share", sorted(SHARE_POINTS))
def test_multi_task_split_points(share: str) -> None:
    model = create_model("mtl_h-4", share=share)
    _check_trains(model)
    assert len(model.body.stages) == SHARE_POINTS[share]
    assert set(model.task_bodies) == (set() if share == "all" else {"pose", "seg"})


def test_sharing_less_costs_more_parameters() -> None:
    counts = [
        sum(p.numel() for p in create_model("mtl_h-4", share=s).parameters()) for s in ("all", "s2", "s1", "backbone")
    ]
    assert counts == sorted(counts) and len(set(counts)) == 4


def test_non_default_keypoints_and_classes() -> None:
    model = create_model("mtl_h-4", num_keypoints=5, num_classes=3)
    outputs = _check_trains(model)
    assert outputs["heatmaps"].shape[1] == 5 and outputs["seg"].shape[1] == 3


def test_forward_equals_features_then_heads() -> None:
    model = create_model("mtl_h-4", share="s1").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        direct = model(images)
        features = model.forward_features(images)
        split = model.forward_heads(features)
    assert len(features.taps) == 4 and len(features.branches) == 2
    assert features.branches[0].shape[-2:] == (16, 16)
    for key in direct:
        torch.testing.assert_close(direct[key], split[key])


def test_trunk_is_shared_by_both_heads() -> None:
    model = create_model("mtl_h-4")
    images = torch.randn(2, 3, 64, 64)
    model(images)["seg"].square().mean().backward()
    seg_grads = {n: p.grad.clone() for n, p in model.body.named_parameters() if p.grad is not None}
    model.zero_grad()
    model(images)["heatmaps"].square().mean().backward()
    pose_grads = {n for n, p in model.body.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert seg_grads and pose_grads, "both heads must train the shared HRNet body"


def test_lite_has_no_squeeze_excitation_and_no_silu() -> None:
    model = create_model("mtl_h-4", lite=True)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "SiLU" not in kinds and "SqueezeExcitation" not in kinds and "ReLU6" in kinds
    full = {type(m).__name__ for m in create_model("mtl_h-4").modules()}
    assert {"SiLU", "SqueezeExcitation"} <= full
    _check_trains(model)


def test_input_size_must_be_multiple_of_32() -> None:
    model = create_model("pose_h-4")
    with pytest.raises(ValueError, match="nearest valid size is 96x128"):
        model(torch.randn(1, 3, 100, 120))


def test_native_input_sizes() -> None:
    assert create_model("pose_h0").input_size == (512, 512)
    assert create_model("mtl_h-4").input_size == (384, 384)
    assert create_model("seg_h-2", input_size=256).input_size == (256, 256)


def test_bad_names_and_overrides_are_explained() -> None:
    with pytest.raises(ValueError, match="unknown model 'pose_b0'"):
        create_model("pose_b0")
    with pytest.raises(ValueError, match="unknown override"):
        create_model("pose_h0", widths=3)
    with pytest.raises(ValueError, match="only applies to multi-task"):
        create_model("pose_h0", share="backbone")
    with pytest.raises(ValueError, match="share must be one of"):
        create_model("mtl_h0", share="head")
    with pytest.raises(ValueError, match="needs an EfficientNet backbone"):
        create_model("higherhrnet_w32", lite=True)


def test_backbone_taps_strides() -> None:
    backbone = EfficientNetBackbone(-2)
    taps = backbone(torch.randn(1, 3, 64, 128))
    assert [t.shape[-2:] for t in taps] == [(64 // s, 128 // s) for s in backbone.strides]
    assert tuple(t.shape[1] for t in taps) == backbone.out_channels
