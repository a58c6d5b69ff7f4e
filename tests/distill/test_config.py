"""A distillation run writes every setting to OUT/config.yaml, and that file alone trains the same weights."""
from pathlib import Path

import pytest
import torch

from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import read_checkpoint, save_checkpoint
from mtl_ehrnet.cli import build_parser, main
from mtl_ehrnet.data import SyntheticLayout


def _options(command: str) -> int:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return sum(1 for action in sub._actions if action.option_strings and action.dest != "help")


@pytest.mark.parametrize("command", ["distill", "train-teacher"])
def test_the_training_commands_keep_to_the_everyday_flags(command: str) -> None:
    assert _options(command) <= 15


def test_a_run_reproduced_from_its_config_yaml_has_identical_weights(synth: SyntheticLayout, tmp_path: Path) -> None:
    torch.manual_seed(3)
    teacher = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4"))
    first = tmp_path / "first"
    assert main(["distill", "--student", "mtl_h-4", "--pose-teacher", str(teacher),
                 "--coco", str(synth.coco_annotations("train")), str(synth.coco_images("train")),
                 "--cityscapes", str(synth.cityscapes_root), "--out", str(first), "--epochs", "1",
                 "--batch-size", "4", "--device", "cpu", "--set", "data.input_size=64", "--set", "run.workers=0",
                 "--set", "run.steps_per_epoch=2", "--set", "run.val_every=0", "--set", "kd.temperature=2",
                 "--set", "loss.task_weights=[1, 0.01]", "--set", "run.task_ratios=[1, 1]"]) == 0
    written = (first / "config.yaml").read_text()
    assert "temperature: 2" in written and "steps_per_epoch: 2" in written and "milestones:" in written
    again = tmp_path / "again"
    assert main(["distill", "--config", str(first / "config.yaml"), "--out", str(again)]) == 0
    assert (again / "config.yaml").read_text() == written
    a, b = (read_checkpoint(path / "student.pt")["model"] for path in (first, again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    initial = create_model("mtl_h-4", input_size=64).state_dict()
    assert any(not torch.equal(a[k], initial[k]) for k in a if a[k].is_floating_point())  # it did train
