"""mtl_ehrnet.load_model: one call for a name, a checkpoint of any kind, or a published file."""
from pathlib import Path

import pytest
import torch

import mtl_ehrnet
from mtl_ehrnet.checkpoint import save_checkpoint
from mtl_ehrnet.models import EfficientNetClassifier
from mtl_ehrnet.models.classifier_presets import classifier_config
from teachers.train import build_teacher


def test_a_name_builds_fresh_weights_with_overrides() -> None:
    model = mtl_ehrnet.load_model("mtl_h-4", num_classes=7)
    assert not model.training and model.config.num_classes == 7


def test_checkpoints_of_every_kind_come_back_with_their_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    written = {
        "pose": mtl_ehrnet.build_model("pose_h-4", input_size=64),
        "classifier": EfficientNetClassifier(classifier_config("efficientnet_b0", num_classes=3, input_size=32)),
        "smp": build_teacher("seg", "smp:Unet:resnet18", input_size=64),
    }
    for name, model in written.items():
        loaded = mtl_ehrnet.load_model(save_checkpoint(tmp_path / f"{name}.pt", model))
        assert type(loaded) is type(model) and not loaded.training
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), (name, key)


def test_overrides_apply_to_a_file_where_the_weights_allow(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "pose.pt", mtl_ehrnet.build_model("pose_h-4", input_size=64))
    assert mtl_ehrnet.load_model(path, input_size=128).config.input_size == (128, 128)
    with pytest.raises(ValueError, match="do not fit the weights of"):
        mtl_ehrnet.load_model(path, num_keypoints=5)


def test_a_missing_file_and_an_unknown_name_are_told_apart(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        mtl_ehrnet.load_model(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown model 'pose_hx'"):
        mtl_ehrnet.load_model("pose_hx")
