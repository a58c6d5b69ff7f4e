"""The quick start's runs: what each waits for, how long they take side by side, and that a run trained in its own
process, beside others, leaves the same weights as one trained alone in this process."""
import shutil
from pathlib import Path

import pytest
import torch

from distill.quickstart import RUNS, QuickstartPlan, run_quickstart, run_settings
from distill.quickstart_runs import (
    ANSWERS_RUN,
    OUTPUT_LOG,
    result_path,
    run_needs,
    schedule_seconds,
    torch_threads,
    train_run,
    train_runs,
)
from distill.quickstart_schedule import StageSchedule, fitting_scale
from mtl_ehrnet.checkpoint import read_checkpoint

TINY = dict(images=10, image_size=(96, 64), input_size=64, seg_teacher="seg_h-4", steps={r: 3 for r in RUNS},
            validations=1, batch_size=2, workers=0)


def test_joint_students_wait_for_the_teachers_they_read() -> None:
    plan = QuickstartPlan.from_recipe()
    needs = run_needs(plan)
    assert set(needs) == set(plan.runs)
    assert needs["joint_student_gt"] == ("pose_teacher",)  # starts from the pose teacher's weights
    assert set(needs["joint_student_kd"]) == {"pose_teacher", "seg_teacher"}
    assert needs["pose_teacher"] == needs["seg_teacher"] == needs["seg_student_gt"] == ()
    scratch = run_needs(QuickstartPlan.from_recipe(student_init="none", pose_teacher="pose_h-3"))
    assert scratch["joint_student_gt"] == () and "pose_student_gt" in scratch


def test_wall_clock_of_runs_side_by_side() -> None:
    seconds = {"pose_teacher": 10.0, "seg_teacher": 4.0, "seg_student_gt": 2.0, "joint_student_gt": 5.0,
               "joint_student_kd": 8.0}
    needs = run_needs(QuickstartPlan.from_recipe())
    assert schedule_seconds(seconds, needs, jobs=1) == 29.0  # one after another
    # Two at once: the pose teacher beside both segmentation runs (0-10), then both joint students (10-18).
    assert schedule_seconds(seconds, needs, jobs=2) == 18.0
    assert schedule_seconds(seconds, needs, jobs=5) == 18.0  # the teachers bound it
    # A budget shared by runs side by side scales the steps by the wall clock, not by the sum.
    steps = {name: 100 for name in seconds}
    per_step = {name: s / 100 for name, s in seconds.items()}
    assert fitting_scale(steps, per_step, 9.0, lambda each: schedule_seconds(each, needs, jobs=2)) == 0.5
    assert fitting_scale(steps, per_step, 14.5) == 0.5
    with pytest.raises(ValueError, match="wait on each other"):
        schedule_seconds({"pose_teacher": 1.0, "seg_teacher": 1.0},
                         {"pose_teacher": ("seg_teacher",), "seg_teacher": ("pose_teacher",)}, jobs=2)


def test_threads_are_a_recipe_setting() -> None:
    assert QuickstartPlan.from_recipe().threads == 1
    with pytest.raises(ValueError, match="threads must be an integer >= 1, got 0"):
        QuickstartPlan.from_recipe(threads=0)
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_runs_side_by_side_equal_runs_alone(tmp_path: Path) -> None:
    plan = QuickstartPlan(**TINY)
    out = tmp_path / "side"
    paths = run_quickstart(out, plan, jobs=2)
    assert paths["markdown"].is_file()
    assert all(result_path(out, name).is_file() for name in plan.runs)
    # Each process's console output; runs off the longest path yield the CPU to those on it.
    assert "trains at niceness" in (out / "runs" / "seg_student_gt" / OUTPUT_LOG).read_text()
    kd_log = (out / "runs" / "joint_student_kd" / OUTPUT_LOG).read_text()
    assert "trains at niceness" not in kd_log
    # The distilled student read the segmentation teacher's answers recorded beside the pose teacher, which are
    # gone once it is trained.
    assert "teacher answers: 3 of 3 batches' seg maps read from" in kd_log
    assert not (out / "runs" / ANSWERS_RUN).exists()
    # The same runs again in this process, alone (the distilled student with its teachers online): the same
    # weights to the bit.
    alone = tmp_path / "alone"
    shutil.copytree(out / "data", alone / "data")
    for teacher in ("pose_teacher", "seg_teacher"):
        shutil.copytree(out / "runs" / teacher, alone / "runs" / teacher)
    schedule = StageSchedule(epochs=1, steps_per_epoch=3, val_every=1)
    for name in ("seg_student_gt", "joint_student_kd"):
        train_run(name, plan, alone, schedule, run_settings)
        side_by_side = read_checkpoint(out / "runs" / name / "last.pt")["model"]
        in_process = read_checkpoint(alone / "runs" / name / "last.pt")["model"]
        assert side_by_side.keys() == in_process.keys()
        assert all(torch.equal(side_by_side[k], in_process[k]) for k in side_by_side), name
    # Finished runs are not trained again.
    stamp = result_path(out, "joint_student_kd").stat().st_mtime_ns
    train_runs(plan, out, {name: schedule for name in plan.runs}, run_settings, jobs=2)
    assert result_path(out, "joint_student_kd").stat().st_mtime_ns == stamp


def test_a_failed_run_names_itself_and_its_log(tmp_path: Path) -> None:
    plan = QuickstartPlan(**TINY)
    out = tmp_path / "qs"
    from distill.quickstart import _synthetic_set

    layout = _synthetic_set(out / "data", plan)
    shutil.rmtree(layout.cityscapes_root / "gtFine")  # the segmentation runs find no labels
    schedule = StageSchedule(epochs=1, steps_per_epoch=3, val_every=1)
    with pytest.raises(RuntimeError, match=r"run seg_teacher failed .*output\.log\) ends:"):
        train_runs(plan, out, {name: schedule for name in plan.runs}, run_settings, jobs=2)
    with pytest.raises(ValueError, match=r"jobs \(--jobs\) must be >= 1, got 0"):
        train_runs(plan, out, {name: schedule for name in plan.runs}, run_settings, jobs=0)
