"""Checkpoints round-trip, refuse code-carrying pickles and name mismatched architectures."""
from pathlib import Path

import pytest
import torch

from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import load_matching_weights, load_model, load_weights, read_checkpoint, save_checkpoint


def test_round_trip_restores_architecture_and_weights(tmp_path: Path) -> None:
    model = create_model("mtl_h-4", num_classes=5, share="s1")
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, epoch=7)
    loaded = load_model(path)
    assert loaded.config == model.config and not loaded.training
    for (ka, a), (kb, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(a, b)
    assert read_checkpoint(path)["epoch"] == 7
    assert not list(path.parent.glob("*.tmp")), "atomic write must leave no temporary file"


class _RunsCode:
    def __reduce__(self):  # pickling this makes unpickling call print(...)
        return (print, ("this ran",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"config": {}, "model": {}, "payload": _RunsCode()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        read_checkpoint(path)


def test_other_architecture_error_names_both_configs(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4"))
    with pytest.raises(ValueError, match=r"(?s)checkpoint: pose_h-4.*model: +seg_h-4"):
        load_weights(create_model("seg_h-4"), path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not an mtl_ehrnet checkpoint"):
        load_model(path)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.pt")


def test_single_task_weights_start_a_multi_task_model_of_the_same_width(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pose = create_model("pose_h-4")
    path = save_checkpoint(tmp_path / "pose.pt", pose)
    student = create_model("mtl_h-4")
    seg_head_before = {k: v.clone() for k, v in student.state_dict().items() if k not in pose.state_dict()}
    report = load_matching_weights(student, path)
    after = student.state_dict()
    assert sorted(report.loaded) == sorted(pose.state_dict()) and not report.unexpected
    assert all(torch.equal(after[k], v) for k, v in pose.state_dict().items())
    assert sorted(report.missing) == sorted(seg_head_before) and any(k.startswith("heads.seg") for k in report.missing)
    assert all(torch.equal(after[k], v) for k, v in seg_head_before.items()), "weights the file lacks keep their init"


def test_weights_of_another_width_are_refused_naming_both(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-3"))
    with pytest.raises(ValueError, match=r"(?s)differ in shape.*checkpoint: pose_h-3.*model: +mtl_h-4"):
        load_matching_weights(create_model("mtl_h-4"), path)


def test_a_kind_no_package_builds_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4"))
    data = torch.load(path, weights_only=True)
    data["config"] = {"kind": "mystery_net"}
    torch.save(data, path)
    with pytest.raises(ValueError, match=r"pose.pt holds a 'mystery_net' model, which no installed package builds"):
        load_model(path)
