"""The quick start runs every step end to end (tiny sizes) and writes the comparison with all six rows."""
import json
from pathlib import Path

import torch

from distill.compare import ROW_NAMES
from distill.quickstart import RUNS as quickstart_runs
from distill.quickstart import QuickstartPlan, run_quickstart
from distill.quickstart_budget import StageSchedule, schedule_for, split_budget


def test_quickstart_end_to_end_tiny(tmp_path: Path) -> None:
    plan = QuickstartPlan(
        images=10,
        image_size=(96, 64),
        input_size=64,
        pose_teacher="pose_h-4",
        seg_teacher="seg_h-4",
        teacher_epochs=1,
        student_epochs=1,
        batch_size=2,
        workers=0,
        minutes=None,
        task_ratios=(1.0, 1.0),
        ema_decay=0.9,
        init_lr_factor=0.2,
        teacher_flip=True,
        teacher_cache=True,
        cache_input_size=(64, 96),
        cache_mirrored=True,
        cache_blend=True,
    )
    paths = run_quickstart(tmp_path / "qs", plan)
    rows = json.loads(paths["json"].read_text())
    assert [r["name"] for r in rows] == list(ROW_NAMES)
    assert all({"ap", "miou", "params", "macs", "latency_ms"} <= set(r) for r in rows)
    assert paths["plot"].is_file() and paths["markdown"].is_file()
    from mtl_ehrnet.checkpoint import read_checkpoint

    for run in ("pose_teacher", "joint_student_gt", "joint_student_kd"):  # the plan's tag loss reaches every pose run
        extra = read_checkpoint(tmp_path / "qs" / "runs" / run / "last.pt")["run_config"]["extra"]
        assert (extra["ae_weight"], extra["ae_push"]) == (plan.ae_weight, plan.ae_push) == (0.01, "max")
    # The pose teacher has the student's width: it is the separate pose student too, and starts both joint students.
    assert plan.runs == tuple(r for r in quickstart_runs if r != "pose_student_gt")
    assert not (tmp_path / "qs" / "runs" / "pose_student_gt").exists()
    by = {r["name"]: r for r in rows}
    assert (
        by["pose_student_gt"]["ap"] == by["pose_teacher"]["ap"]
        and by["pose_student_gt"]["params"] == by["pose_teacher"]["params"]
    )
    for run in ("joint_student_gt", "joint_student_kd"):
        extra = read_checkpoint(tmp_path / "qs" / "runs" / run / "last.pt")["run_config"]["extra"]
        assert extra["init_weights"] == str(tmp_path / "qs" / "runs" / "pose_teacher" / "best.pt")
        assert extra["task_weights"] == list(plan.task_weights) == [1.0, 0.01]
        assert extra["init_lr_factor"] == plan.init_lr_factor == 0.2
    kd = read_checkpoint(tmp_path / "qs" / "runs" / "joint_student_kd" / "last.pt")["run_config"]["extra"]["kd"]
    assert kd["labelled_kd_weight"] == plan.labelled_kd_weight == 1.0
    assert kd["teacher_flip"] is plan.teacher_flip is True  # flip-averaged teachers fill the cache
    assert kd["weights"] == {"pose/kd_heatmaps": plan.pose_kd_weight}
    manifest = json.loads((tmp_path / "qs" / "cache" / "manifest.json").read_text())
    assert (
        "teacher_flip" in manifest and "mirrored" in manifest and manifest["input_size"] == "64,96"
    )  # the plan's cache options reach it
    assert (tmp_path / "qs" / "cache" / "pose" / "96" / "0m.pt").is_file()
    for run in plan.runs:  # and every run averages its weights
        state = read_checkpoint(tmp_path / "qs" / "runs" / run / "last.pt")
        assert state["run_config"]["ema_decay"] == plan.ema_decay == 0.9 and "train_model" in state
    # A second run reuses every result instead of training again.
    student = tmp_path / "qs" / "runs" / "joint_student_kd" / "student.pt"
    data = tmp_path / "qs" / "data" / "coco" / "annotations" / "person_keypoints_val.json"
    stamps = student.stat().st_mtime_ns, data.stat().st_mtime_ns
    run_quickstart(tmp_path / "qs", plan)
    assert (student.stat().st_mtime_ns, data.stat().st_mtime_ns) == stamps


def test_schedule_fits_the_time_and_validates_three_times() -> None:
    # 600 s at 2 s/step = 300 steps; an epoch is 100 steps: 3 whole epochs, validated after each.
    assert schedule_for(600, 2.0, 100) == StageSchedule(3, 100, 1)
    # 60 s = 30 steps < one epoch: three short epochs of 10 steps, each validated.
    assert schedule_for(60, 2.0, 100) == StageSchedule(3, 10, 1)
    # Plenty of time: whole epochs, about three validations.
    long = schedule_for(10_000, 1.0, 100)
    assert (long.epochs, long.steps_per_epoch, long.val_every) == (100, 100, 33)


def test_budget_is_shared_and_refused_when_spent() -> None:
    steps = {"a": 1.0, "b": 2.0}
    plans = split_budget(300, steps, {"a": 10, "b": 10}, shares={"a": 2, "b": 1})
    assert plans["a"].epochs * plans["a"].steps_per_epoch == 200  # 200 s at 1 s/step
    assert plans["b"].epochs * plans["b"].steps_per_epoch == 50  # 100 s at 2 s/step
    import pytest

    with pytest.raises(ValueError, match="--minutes"):
        split_budget(-5, steps, {"a": 10, "b": 10}, shares={"a": 1, "b": 1})


def test_budgeted_quickstart_writes_its_plan_and_keeps_it(tmp_path: Path, monkeypatch) -> None:
    from distill import quickstart

    timed = []

    def one_second(jobs, **kwargs):  # noqa: ANN001, ANN003 - stands in for the timer
        for model, loss_fn, batches in jobs.values():
            timed.append(tuple(next(batches)["image"].shape))  # real batches from a loader, as training gets them
        return {name: 1.0 for name in jobs}

    # Measured step times vary with the machine's load; a fixed one makes the shares checkable.
    monkeypatch.setattr(quickstart, "seconds_per_step_each", one_second)

    # From scratch with a wider pose teacher: six runs, five of them timed (the KD step is derived).
    plan = QuickstartPlan(
        images=6,
        image_size=(96, 64),
        input_size=64,
        pose_teacher="pose_h-3",
        seg_teacher="seg_h-4",
        batch_size=2,
        workers=0,
        minutes=60.0,
        task_ratios=(1.0, 1.0),
        student_init="none",
    )
    layout = quickstart._synthetic_set(tmp_path / "data", plan)
    first = quickstart._budget(tmp_path, plan, layout, started=0.0 + __import__("time").monotonic()).schedules
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert set(saved["schedules"]) == set(quickstart.RUNS) and saved["train_seconds"] > 0
    assert all(s.epochs >= 1 and s.steps_per_epoch >= 1 for s in first.values())
    assert len(timed) == 5 and all(shape == (2, 3, 64, 64) for shape in timed)
    # At equal step times the shares decide: the pose teacher trains longest.
    steps = {name: s.epochs * s.steps_per_epoch for name, s in first.items()}
    assert steps["pose_teacher"] == max(steps.values()) > steps["pose_student_gt"]
    again = quickstart._budget(tmp_path, QuickstartPlan(minutes=1.0), layout, started=0.0).schedules
    assert again == first  # a resumed run keeps its schedules
    # Started from a pose teacher of the student's width, the separate pose student is that teacher: not timed, no run.
    timed.clear()
    (tmp_path / "warm").mkdir()
    warm = quickstart._budget(
        tmp_path / "warm",
        QuickstartPlan(
            images=6, image_size=(96, 64), input_size=64, seg_teacher="seg_h-4", batch_size=2, workers=0, minutes=60.0
        ),
        layout,
        started=__import__("time").monotonic(),
    ).schedules
    assert set(warm) == set(quickstart.RUNS) - {"pose_student_gt"} and len(timed) == 4
    warm_steps = {name: s.epochs * s.steps_per_epoch for name, s in warm.items()}
    assert warm_steps["pose_teacher"] > steps["pose_teacher"], "the pose teacher gets the separate pose student's time"
    assert abs(warm_steps["joint_student_kd"] - warm_steps["joint_student_gt"]) <= 0.02 * warm_steps["joint_student_gt"]


def test_joint_students_get_the_same_number_of_steps() -> None:
    from distill.quickstart import KD_STEP_FACTOR, RUNS
    from distill.quickstart_budget import SHARES, with_distilled_share

    step = {name: 1.0 for name in RUNS}
    step["joint_student_kd"] = KD_STEP_FACTOR  # a distillation step costs more
    plans = split_budget(
        100_000, step, {name: 1_000_000 for name in RUNS}, with_distilled_share(SHARES, KD_STEP_FACTOR)
    )
    gt, kd = (plans[n].epochs * plans[n].steps_per_epoch for n in ("joint_student_gt", "joint_student_kd"))
    assert abs(kd - gt) / gt < 0.02, (gt, kd)


def test_quickstart_plan_refuses_an_unknown_optimizer() -> None:
    import pytest

    with pytest.raises(ValueError, match="seg_optimizer must be adam or sgd"):
        QuickstartPlan(seg_optimizer="lamb")
    with pytest.raises(ValueError, match="task ratios .* must be >= 0"):
        QuickstartPlan(task_ratios=(-1.0, 1.0))
    with pytest.raises(ValueError, match=r"task_ratios must be \(pose, seg\) shares"):
        QuickstartPlan(task_ratios=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="batch_size 2 is too small"):
        QuickstartPlan(batch_size=2, task_ratios=(3.0, 1.0))  # 3:1 leaves no segmentation sample in a batch of 2
    with pytest.raises(ValueError, match=r"push \(--ae-push\) must be one of"):
        QuickstartPlan(ae_push="hinge")
    with pytest.raises(ValueError, match="class_weights must be one of"):
        QuickstartPlan(class_weights="inverse")
    with pytest.raises(
        ValueError, match=r"(?s)pose teacher must have the student's width: pose_h-4 for mtl_h-4, got pose_h-3"
    ):
        QuickstartPlan(pose_teacher="pose_h-3")
    assert QuickstartPlan(pose_teacher="pose_h-3", student_init="none").runs == quickstart_runs
    with pytest.raises(ValueError, match="student_init must be"):
        QuickstartPlan(student_init="seg_teacher")
    with pytest.raises(ValueError, match=r"seg task weight \(--task-weights\) must be finite and >= 0"):
        QuickstartPlan(task_weights=(1.0, -0.5))
    with pytest.raises(ValueError, match=r"task_weights must be \(pose, seg\) factors"):
        QuickstartPlan(task_weights=(1.0,))
    with pytest.raises(
        ValueError, match=r"labelled_kd_weight \(--labelled-kd-weight\) must be finite and >= 0, got -1"
    ):
        QuickstartPlan(labelled_kd_weight=-1.0)
    with pytest.raises(ValueError, match=r"init_lr_factor \(--init-lr-factor\) must be finite and > 0, got 0.0"):
        QuickstartPlan(init_lr_factor=0.0)


def test_quickstart_command_passes_who_is_in_the_scenes(monkeypatch) -> None:
    import pytest

    from distill import quickstart
    from mtl_ehrnet.cli import main

    plans = []
    monkeypatch.setattr(
        quickstart, "run_quickstart", lambda out, plan: plans.append(plan) or {"markdown": "m", "plot": "p"}
    )
    assert (
        main(
            [
                "quickstart",
                "--people",
                "2",
                "4",
                "--min-person-height",
                "0.3",
                "--max-person-height",
                "0.7",
                "--task-ratios",
                "1",
                "1",
            ]
        )
        == 0
    )
    assert (plans[0].people, plans[0].min_person_height, plans[0].max_person_height) == ((2, 4), 0.3, 0.7)
    assert plans[0].scene.crowds is False and plans[0].task_ratios == (1.0, 1.0)
    assert plans[0].ground_truth == {"ae_weight": 0.01, "ae_push": "max", "class_weights": "none", "ohem": None}
    assert main(["quickstart", "--ae-weight", "0.001", "--ae-push", "exp", "--ohem", "0.7"]) == 0
    assert plans[1].ground_truth == {"ae_weight": 0.001, "ae_push": "exp", "class_weights": "none", "ohem": 0.7}
    assert plans[0].ema_decay is None
    assert main(["quickstart", "--ema-decay", "0.998"]) == 0 and plans[2].ema_decay == 0.998
    assert (plans[0].student_init, plans[0].task_weights, plans[0].pose_teacher) == (
        "pose_teacher",
        (1.0, 0.01),
        "pose_h-4",
    )
    assert main(["quickstart", "--student-init", "none", "--pose-teacher", "pose_h-3", "--task-weights", "1", "1"]) == 0
    assert (plans[3].student_init, plans[3].task_weights, plans[3].pose_teacher) == ("none", (1.0, 1.0), "pose_h-3")
    assert main(["quickstart", "--labelled-kd-weight", "0.5", "--init-lr-factor", "0.3"]) == 0
    assert (plans[4].labelled_kd_weight, plans[4].init_lr_factor) == (0.5, 0.3)
    assert plans[0].kd_settings.teacher_flip is False and plans[0].init_lr_factor == 1.0
    assert main(["quickstart", "--teacher-flip"]) == 0 and plans[5].kd_settings.teacher_flip is True
    assert plans[0].kd_settings.weights == {"pose/kd_heatmaps": 4.0} and plans[0].teacher_cache is False
    assert plans[0].shares["joint_student_kd"] == plans[0].shares["joint_student_gt"] * plans[0].kd_step_factor
    assert main(["quickstart", "--pose-kd-weight", "2"]) == 0 and plans[6].kd_settings.weights == {
        "pose/kd_heatmaps": 2.0
    }
    assert main(["quickstart", "--seed", "3"]) == 0 and (plans[0].seed, plans[7].seed) == (0, 3)
    assert main(["quickstart", "--step-cap-scale", "0"]) == 0 and (plans[0].step_cap_scale, plans[8].max_steps) == (
        1.0,
        {},
    )
    assert plans[0].cache_sizes == (192,) and not (plans[0].cache_mirrored or plans[0].cache_blend)  # 1.5x the input
    assert (
        main(["quickstart", "--teacher-cache", "--cache-input-size", "160", "192", "--cache-mirrored", "--cache-blend"])
        == 0
    )
    assert (plans[9].cache_sizes, plans[9].cache_mirrored, plans[9].cache_blend) == ((160, 192), True, True)
    with pytest.raises(
        SystemExit,
        match="mtl-ehrnet quickstart: --cache-input-size, --cache-mirrored shape the teacher cache: "
        "add --teacher-cache",
    ):
        main(["quickstart", "--cache-input-size", "160", "--cache-mirrored"])
    with pytest.raises(
        SystemExit, match=r"mtl-ehrnet quickstart: cache_blend \(--cache-blend\) mixes two cached sizes"
    ):
        main(["quickstart", "--teacher-cache", "--cache-blend"])
    with pytest.raises(SystemExit, match="multiples of 32, got \\[100\\]"):
        main(["quickstart", "--teacher-cache", "--cache-input-size", "100"])
    with pytest.raises(
        SystemExit, match=r"mtl-ehrnet quickstart: step_cap_scale \(--step-cap-scale\) must be finite and >= 0"
    ):
        main(["quickstart", "--step-cap-scale", "-2"])
    with pytest.raises(
        SystemExit,
        match=r"mtl-ehrnet quickstart: pose_kd_weight \(--pose-kd-weight\) must be finite and >= 0, got -1.0",
    ):
        main(["quickstart", "--pose-kd-weight", "-1"])
    with pytest.raises(SystemExit, match="mtl-ehrnet quickstart: student_init 'pose_teacher' starts"):
        main(["quickstart", "--pose-teacher", "pose_h-3"])
    with pytest.raises(SystemExit, match="mtl-ehrnet quickstart: ema_decay must be in"):
        main(["quickstart", "--ema-decay", "1.5"])
    with pytest.raises(SystemExit, match="mtl-ehrnet quickstart: task ratios .* must be >= 0 with a positive sum"):
        main(["quickstart", "--task-ratios", "0", "0"])
    with pytest.raises(SystemExit, match="mtl-ehrnet quickstart: max_person_height"):
        main(["quickstart", "--min-person-height", "0.5", "--max-person-height", "0.4"])


def test_step_timer_batches_go_round_a_set_smaller_than_its_rounds() -> None:
    import pytest

    from distill.quickstart import _timing_batches

    samples = [{"image": torch.full((3, 4, 4), float(i))} for i in range(3)]
    batches = _timing_batches(samples, batch_size=2, workers=0, seed=0)
    seen = [next(batches)["image"].shape for _ in range(5)]  # one batch a pass, five passes
    assert seen == [(2, 3, 4, 4)] * 5
    with pytest.raises(ValueError, match="2 training samples cannot fill one batch of 4: raise --images"):
        next(_timing_batches(samples[:2], batch_size=4, workers=0, seed=0))
