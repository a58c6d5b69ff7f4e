"""The shipped recipes: each loads into its job's config tree, and --config / --recipe take them by name."""
from pathlib import Path

import pytest

from distill.commands import distill_config
from distill.config import DistillConfig
from distill.quickstart import QuickstartPlan
from mtl_ehrnet.cli import build_parser, main
from mtl_ehrnet.config_tree import from_tree, read_tree
from mtl_ehrnet.recipes import config_file, recipe_names, recipe_path
from mtl_ehrnet.training.backbone_config import BackboneConfig
from teachers.commands import teacher_config
from teachers.config import TeacherConfig

JOBS = {"teacher_": TeacherConfig, "distill_": DistillConfig, "backbone_": BackboneConfig}


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_is_a_valid_config_of_its_job(name: str) -> None:
    if name == "quickstart":
        assert QuickstartPlan.from_recipe(recipe_path(name)).steps["pose_teacher"] > 0
        return
    (job,) = [cls for prefix, cls in JOBS.items() if name.startswith(prefix)]
    config = from_tree(job, read_tree(name), name)  # unknown keys or bad values would raise
    assert config.run_config().epochs == config.run["epochs"] > 0


def test_recipes_lists_and_prints_them(capsys: pytest.CaptureFixture) -> None:
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing and str(recipe_path(name)) in listing for name in recipe_names())
    assert main(["recipes", "teacher_pose_h0"]) == 0
    assert capsys.readouterr().out == recipe_path("teacher_pose_h0").read_text()
    assert main(["recipes", "nope"]) != 0
    assert "no shipped recipe 'nope'; recipes: distill_mtl_h0" in capsys.readouterr().err


def test_config_takes_a_shipped_recipe_by_name_under_the_typed_flags() -> None:
    args = build_parser().parse_args(["train-teacher", "pose", "--config", "teacher_pose_h0", "--coco", "a.json",
                                      "img", "--batch-size", "4", "--out", "o"])
    config = teacher_config(args)
    run = config.run_config()
    assert (config.model, config.data.input_size, config.data.coco) == ("pose_h0", 512, ("a.json", "img"))
    assert (run.epochs, run.batch_size, run.milestones, run.monitor) == (300, 4, (200, 260), "AP")
    args = build_parser().parse_args(["distill", "--config", "distill_mtl_h0", "--coco", "a.json", "img",
                                      "--cityscapes", "cs", "--out", "o"])
    config = distill_config(args)
    assert (config.student, config.loss.task_weights, config.run["task_ratios"]) == ("mtl_h0", (1.0, 0.01), [1.0, 1.0])


def test_a_file_wins_over_a_recipe_name_and_a_missing_one_is_named(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_file("teacher_seg_h0") == recipe_path("teacher_seg_h0")
    Path("teacher_seg_h0").write_text("task: seg\n")
    assert config_file("teacher_seg_h0") == Path("teacher_seg_h0")
    with pytest.raises(FileNotFoundError, match="config mine.yaml is neither a file nor a shipped recipe"):
        config_file("mine.yaml")
