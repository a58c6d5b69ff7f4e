"""ImageNet EfficientNet classifiers (torchvision, timm, timm's TensorFlow ports) as sources, checked
against the libraries' own models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import mtl_ehrnet
from mtl_ehrnet.convert import convert_checkpoint


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    for key, value in model.state_dict().items():
        if key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
        elif key.endswith("running_mean"):
            value.normal_(0, 0.1)
        elif key.endswith(".bias"):
            value.normal_(0, 0.05)
    return model.eval()


def _check(reference: torch.nn.Module, model: torch.nn.Module, size) -> None:
    images = torch.randn(1, 3, *size)
    with torch.no_grad():
        expected = reference(images)
        assert torch.allclose(model(images)["logits"], expected, atol=1e-5 * expected.abs().max().item())


def test_torchvision_efficientnet_b0(tmp_path: Path) -> None:
    reference = _randomise(torchvision.models.efficientnet_b0())
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, tmp_path / "efficientnet_b0.pth")
    model, report = convert_checkpoint(tmp_path / "efficientnet_b0.pth")
    assert model.config.name == "efficientnet_b0" and report.layout == "torchvision" and not model.config.tf_padding
    _check(reference, model, (96, 96))


@pytest.mark.parametrize("name, phi", [("efficientnet_b0", 0), ("tf_efficientnet_b0", 0), ("tf_efficientnet_b2", 1)])
def test_timm_efficientnets_including_tf_ports(tmp_path: Path, name: str, phi: int) -> None:
    timm = pytest.importorskip("timm")
    reference = _randomise(timm.create_model(name, pretrained=False))
    torch.save({"state_dict": reference.state_dict()}, tmp_path / f"{name}_ra-0123.pth")
    model, report = convert_checkpoint(tmp_path / f"{name}_ra-0123.pth")
    assert model.config.name == f"efficientnet_b{phi}" and report.layout == "timm"
    assert model.config.tf_padding == name.startswith("tf_") and model.config.bn_eps == (
        1e-3 if name.startswith("tf_") else 1e-5
    )
    _check(reference, model, (97, 131) if name.startswith("tf_") else (96, 96))  # odd sizes: TF padding from the input


def test_tf_weights_are_told_by_source_when_the_file_name_does_not(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    reference = _randomise(timm.create_model("tf_efficientnet_b0", pretrained=False))
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    plain, _ = convert_checkpoint(tmp_path / "weights.pth")
    assert not plain.config.tf_padding
    model, _ = convert_checkpoint(tmp_path / "weights.pth", source="timm:tf_efficientnet_b0")
    _check(reference, model, (96, 96))


def test_a_classifier_gives_a_pose_model_its_backbone_not_its_head(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    reference = _randomise(timm.create_model("tf_efficientnet_b0", pretrained=False))
    path = tmp_path / "tf_efficientnet_b0_aa.pth"
    torch.save(reference.state_dict(), path)
    with pytest.raises(ValueError, match="a classifier fills only a backbone.*backbone_weights"):
        mtl_ehrnet.create_model("pose_h0", weights=path)
    pose = mtl_ehrnet.create_model("pose_h0", backbone_weights=path).eval()
    assert pose.config.tf_padding and pose.config.bn_eps == 1e-3
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.forward_features(images)  # conv_head + bn2 after the last stage
        classifier, _ = convert_checkpoint(path)
        last_stage = pose.backbone(images)[-1]
        assert torch.allclose(classifier.head(last_stage), expected, atol=1e-5 * expected.abs().max().item())
