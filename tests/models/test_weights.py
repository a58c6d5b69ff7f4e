"""Backbone weights load from local files, with a clear report and clear errors."""
from pathlib import Path

import pytest
import torch
import torchvision

from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import save_checkpoint


def test_torchvision_classifier_state_dict_loads_into_backbone(tmp_path: Path) -> None:
    classifier = torchvision.models.efficientnet_b0(weights=None)
    path = tmp_path / "b0.pth"
    torch.save(classifier.state_dict(), path)
    model = create_model("mtl_h0", backbone_weights=path)
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, classifier.state_dict()[key])


def test_report_names_missing_and_unexpected_keys(tmp_path: Path) -> None:
    from mtl_ehrnet import load_backbone_weights

    source = create_model("pose_h-4")
    state = {f"backbone.{k}": v for k, v in source.backbone.state_dict().items()}
    dropped = next(iter(state))
    del state[dropped]
    state["classifier.weight"] = torch.zeros(3)
    target = create_model("seg_h-4")
    report = load_backbone_weights(target.backbone, state)
    assert report.missing == [dropped.removeprefix("backbone.")]
    assert report.unexpected == ["classifier.weight"]
    assert len(report.loaded) == len(state) - 1


def test_whole_model_checkpoint_initialises_another_tasks_backbone(tmp_path: Path) -> None:
    pose = create_model("pose_h-4")
    path = save_checkpoint(tmp_path / "pose.pt", pose)
    mtl = create_model("mtl_h-4", backbone_weights=path)
    torch.testing.assert_close(mtl.backbone.state_dict(), pose.backbone.state_dict())


def test_backbone_of_another_phi_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b-4.pth"
    torch.save(create_model("pose_h-4").backbone.state_dict(), path)
    with pytest.raises(ValueError, match="shape mismatches"):
        create_model("pose_h0", backbone_weights=path)


def test_unrelated_state_dict_and_missing_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="no key of the weights matches"):
        create_model("pose_h-4", backbone_weights=path)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        create_model("pose_h-4", backbone_weights=tmp_path / "nothing.pth")
