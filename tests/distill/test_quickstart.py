"""The quick start runs every step end to end (tiny sizes) for its recipe's fixed steps and writes the comparison
with all six rows; --minutes scales the steps alike; --seeds reports the spread."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from distill.quickstart import RUNS as quickstart_runs
from distill.quickstart import QuickstartPlan, run_quickstart
from distill.quickstart_runs import ANSWERS_RUN
from distill.quickstart_schedule import StageSchedule, fitting_scale, scaled_steps, schedule_for_steps
from evaluation.compare import ROW_NAMES
from mtl_ehrnet.recipes import recipe_path

TINY_STEPS = {run: 3 for run in quickstart_runs}


def _recipe(**changes) -> QuickstartPlan:  # noqa: ANN003
    return QuickstartPlan.from_recipe(**changes)


def test_quickstart_end_to_end_tiny(tmp_path: Path) -> None:
    plan = QuickstartPlan(
        images=10,
        image_size=(96, 64),
        input_size=64,
        pose_teacher="pose_h-4",
        seg_teacher="seg_h-4",
        steps=TINY_STEPS,
        validations=1,
        batch_size=2,
        workers=0,
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
    assert all({"ap", "miou", "params", "macs", "latency_ms", "seed", "steps"} <= set(r) for r in rows)
    assert all(r["steps"] == 3 and r["seed"] == 0 for r in rows)  # the recipe's steps, whatever the machine
    assert "| seed | steps |" in paths["markdown"].read_text()
    assert json.loads((tmp_path / "qs" / "plan.json").read_text())["steps"]["joint_student_kd"] == 3
    assert QuickstartPlan.from_recipe(tmp_path / "qs" / "config.yaml") == plan  # the run's own recipe
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
    assert kd["weights"] == {"pose/kd_heatmaps": plan.pose_kd_weight, "seg/kd": plan.seg_kd_weight}
    assert kd["temperature"] == plan.kd_temperature
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


def test_steps_become_epochs_validated_three_times() -> None:
    # 300 steps, an epoch of 100: three whole epochs, validated after each.
    assert schedule_for_steps(300, 100) == StageSchedule(3, 100, 1)
    # 30 steps < one epoch: three short epochs of 10 steps, each validated.
    assert schedule_for_steps(30, 100) == StageSchedule(3, 10, 1)
    # Many steps: whole epochs, about three validations.
    assert schedule_for_steps(10_000, 100) == StageSchedule(100, 100, 33)
    # A set one batch larger trains the same steps in shorter epochs, not one epoch fewer.
    assert schedule_for_steps(1216, 152) == StageSchedule(8, 152, 2)
    assert schedule_for_steps(1216, 153) == StageSchedule(8, 152, 2)
    assert schedule_for_steps(2592, 73) == StageSchedule(36, 72, 12)
    # Epochs that do not divide the steps: rounded up, by less than one step per epoch.
    assert schedule_for_steps(1000, 153) == StageSchedule(7, 143, 2)
    for steps, full in ((1216, 151), (2592, 71), (7, 100), (999, 2)):
        s = schedule_for_steps(steps, full)
        assert steps <= s.epochs * s.steps_per_epoch < steps + s.epochs and s.steps_per_epoch <= full


def test_minutes_scale_every_run_alike_and_never_up() -> None:
    steps = {"a": 200, "b": 100}
    seconds = {"a": 1.0, "b": 2.0}  # 400 s needed
    assert fitting_scale(steps, seconds, 200) == 0.5
    assert fitting_scale(steps, seconds, 4000) == 1.0
    assert scaled_steps(steps, 0.5, validations=3) == {"a": 100, "b": 50}
    assert scaled_steps(steps, 0.001, validations=3) == {"a": 3, "b": 3}

    with pytest.raises(ValueError, match="--minutes"):
        fitting_scale(steps, seconds, -5)


def test_minutes_scale_the_recipe_and_a_resumed_run_keeps_its_steps(tmp_path: Path, monkeypatch, capsys) -> None:
    from distill import quickstart

    timed = []

    def one_second(jobs, **kwargs):  # noqa: ANN001, ANN003 - stands in for the timer
        for model, loss_fn, batches in jobs.values():
            timed.append(tuple(next(batches)["image"].shape))  # real batches from a loader, as training gets them
        return {name: 1.0 for name in jobs}

    monkeypatch.setattr(quickstart, "seconds_per_step_each", one_second)
    steps = {"pose_teacher": 400, "seg_teacher": 200, "seg_student_gt": 100, "joint_student_gt": 100,
             "joint_student_kd": 100}
    plan = QuickstartPlan(images=6, image_size=(96, 64), input_size=64, seg_teacher="seg_h-4", batch_size=2,
                          workers=0, steps=steps, minutes=10.0)
    layout = quickstart._synthetic_set(tmp_path / "data", plan)
    first = quickstart._schedules(tmp_path, plan, layout)
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert len(timed) == 4 and all(shape == (2, 3, 64, 64) for shape in timed)  # the pose teacher is the pose student
    # 1.1 s a step (1.75x for distillation) for 975 steps and the comparison's fixed time do not fit 9.5 minutes.
    assert 0.3 < saved["scale"] < 0.6 and saved["projected_minutes"] > 10
    assert saved["steps"]["joint_student_kd"] == saved["steps"]["joint_student_gt"]
    assert saved["steps"]["pose_teacher"] == int(400 * saved["scale"] + 1e-9)
    assert "scaled by" in capsys.readouterr().out
    assert set(first) == set(plan.runs) and all(s.epochs >= 1 for s in first.values())
    again = quickstart._schedules(tmp_path, QuickstartPlan.from_recipe(), layout)
    assert again == first  # a resumed run keeps its schedules
    # Side by side, the segmentation teacher's answers are recorded on the core the pose teacher leaves: planned
    # as a run of their own (half a teacher step a batch), and the distilled student's step costs less.
    two = quickstart._schedules(tmp_path / "two", plan, layout, jobs=2)
    recorded = json.loads((tmp_path / "two" / "plan.json").read_text())
    monkeypatch.setattr(quickstart, "records_answers", lambda plan, jobs: False)
    quickstart._schedules(tmp_path / "online", plan, layout, jobs=2)
    online = json.loads((tmp_path / "online" / "plan.json").read_text())
    assert recorded["seconds_per_step"][ANSWERS_RUN] == pytest.approx(0.5 * 1.1)
    assert recorded["seconds_per_step"]["joint_student_kd"] < online["seconds_per_step"]["joint_student_kd"]
    assert recorded["projected_minutes"] < online["projected_minutes"] < saved["projected_minutes"]
    assert set(two) == set(plan.runs)  # the recording takes the distilled student's batches, no schedule of its own
    # Without --minutes nothing is timed: the recipe's steps, on any machine.
    timed.clear()
    fixed = quickstart._schedules(tmp_path / "fixed", replace(plan, minutes=None), layout)
    assert not timed and {n: s.epochs * s.steps_per_epoch for n, s in fixed.items()}["seg_teacher"] == 200


def test_the_shipped_recipe_names_every_run_and_refuses_unknown_keys(tmp_path: Path) -> None:

    plan = _recipe()
    assert set(plan.steps) == set(quickstart_runs) and plan.minutes is None
    assert plan.steps["joint_student_kd"] == plan.steps["joint_student_gt"]  # the comparison measures distillation
    with pytest.raises(ValueError, match=r"unknown recipe keys labeled_kd_weight; known: .*labelled_kd_weight"):
        _recipe(labeled_kd_weight=0.5)
    mine = tmp_path / "mine.yaml"
    mine.write_text("images: 10\nsteps: {pose_teacher: 3}\ntask_wieghts: [1, 1]\n")
    with pytest.raises(ValueError, match=r"mine.yaml: unknown keys task_wieghts; known: "):
        QuickstartPlan.from_recipe(mine)
    mine.write_text("images: 10\nsteps: {pose_teacher: 3}\n")
    with pytest.raises(ValueError, match="the recipe gives no steps for seg_teacher"):
        QuickstartPlan.from_recipe(mine)
    with pytest.raises(ValueError, match=r"steps of unknown runs \['teacher'\]"):
        _recipe(steps={**plan.steps, "teacher": 5})
    with pytest.raises(ValueError, match="steps must be integers >= validations"):
        _recipe(steps={**plan.steps, "seg_teacher": 2})


def test_quickstart_plan_refuses_an_unknown_optimizer() -> None:

    with pytest.raises(ValueError, match="seg_optimizer must be adam or sgd"):
        _recipe(seg_optimizer="lamb")
    with pytest.raises(ValueError, match="task ratios .* must be >= 0"):
        _recipe(task_ratios=(-1.0, 1.0))
    with pytest.raises(ValueError, match=r"task_ratios must be \(pose, seg\) shares"):
        _recipe(task_ratios=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="batch_size 2 is too small"):
        _recipe(batch_size=2, task_ratios=(3.0, 1.0))  # 3:1 leaves no segmentation sample in a batch of 2
    with pytest.raises(ValueError, match=r"push \(--ae-push\) must be one of"):
        _recipe(ae_push="hinge")
    with pytest.raises(ValueError, match="class_weights must be one of"):
        _recipe(class_weights="inverse")
    with pytest.raises(
        ValueError, match=r"(?s)pose teacher must have the student's width: pose_h-4 for mtl_h-4, got pose_h-3"
    ):
        _recipe(pose_teacher="pose_h-3")
    assert _recipe(pose_teacher="pose_h-3", student_init="none").runs == quickstart_runs
    with pytest.raises(ValueError, match="student_init must be"):
        _recipe(student_init="seg_teacher")
    with pytest.raises(ValueError, match=r"seg task weight \(--task-weights\) must be finite and >= 0"):
        _recipe(task_weights=(1.0, -0.5))
    with pytest.raises(ValueError, match=r"task_weights must be \(pose, seg\) factors"):
        _recipe(task_weights=(1.0,))
    with pytest.raises(
        ValueError, match=r"labelled_kd_weight must be finite and >= 0, got -1"
    ):
        _recipe(labelled_kd_weight=-1.0)
    with pytest.raises(ValueError, match=r"init_lr_factor \(--init-lr-factor\) must be finite and > 0, got 0.0"):
        _recipe(init_lr_factor=0.0)


def test_quickstart_command_reads_the_recipe_and_its_changes(monkeypatch, tmp_path: Path) -> None:

    from distill import quickstart
    from mtl_ehrnet.cli import main

    plans, seeds, jobs_seen = [], [], []
    monkeypatch.setattr(quickstart, "run_quickstart",
                        lambda out, plan, jobs: plans.append(plan) or jobs_seen.append(jobs) or {"markdown": "m"})
    monkeypatch.setattr(quickstart, "run_quickstart_seeds",
                        lambda out, plan, s, jobs: seeds.append((plan, s)) or {"markdown": "m"})
    assert main(["quickstart"]) == 0
    assert plans[0] == _recipe()
    assert plans[0].ground_truth == {"ae_weight": 0.01, "ae_push": "max", "class_weights": "none", "ohem": None}
    kd = plans[0].kd_settings
    assert kd.weights == {"pose/kd_heatmaps": 2.0, "seg/kd": 1.0} and kd.temperature == 1.0
    assert plans[0].scene.crowds is False
    assert main(["quickstart", "--set", "labelled_kd_weight=0.5", "--set", "task_weights=[1, 1]", "--set",
                 "people=[2, 4]", "--seed", "3", "--minutes", "20", "--images", "50", "--workers", "2"]) == 0
    changed = plans[1]
    assert (changed.labelled_kd_weight, changed.task_weights, changed.people) == (0.5, (1.0, 1.0), (2, 4))
    assert (changed.seed, changed.minutes, changed.images, changed.workers) == (3, 20.0, 50, 2)
    mine = tmp_path / "mine.yaml"
    mine.write_text(recipe_path("quickstart").read_text().replace("seg_teacher: seg_h-3",
                                                                             "seg_teacher: seg_h-4"))
    assert main(["quickstart", "--recipe", str(mine)]) == 0 and plans[2].seg_teacher == "seg_h-4"
    assert main(["quickstart", "--seeds", "0", "1", "2"]) == 0 and seeds[0][1] == [0, 1, 2]
    with pytest.raises(SystemExit, match="mtl-ehrnet quickstart: unknown recipe keys pose_kd; known: "):
        main(["quickstart", "--set", "pose_kd=2"])
    with pytest.raises(SystemExit, match=r"mtl-ehrnet quickstart: pose_kd_weight must be finite and >= 0, got -1"):
        main(["quickstart", "--set", "pose_kd_weight=-1"])
    with pytest.raises(SystemExit, match=r"mtl-ehrnet quickstart: seg_kd_weight must be finite and >= 0, got nan"):
        main(["quickstart", "--set", "seg_kd_weight=.nan"])
    with pytest.raises(SystemExit, match=r"mtl-ehrnet quickstart: kd_temperature must be finite and > 0, got 0"):
        main(["quickstart", "--set", "kd_temperature=0"])
    with pytest.raises(SystemExit, match=r"mtl-ehrnet quickstart: minutes \(--minutes\) must be finite and > 0"):
        main(["quickstart", "--minutes", "0"])
    with pytest.raises(SystemExit, match="mtl-ehrnet quickstart: --cache-input-size, --cache-mirrored shape the "
                                         "teacher cache: add --teacher-cache"):
        main(["quickstart", "--set", "cache_input_size=[160]", "--set", "cache_mirrored=true"])
    with pytest.raises(SystemExit, match="mtl-ehrnet quickstart: student_init 'pose_teacher' starts"):
        main(["quickstart", "--set", "pose_teacher=pose_h-3"])
    with pytest.raises(SystemExit, match="mtl-ehrnet quickstart: max_person_height"):
        main(["quickstart", "--set", "min_person_height=0.5", "--set", "max_person_height=0.4"])


def test_seeds_report_the_spread_and_the_distillation_margins(tmp_path: Path, monkeypatch) -> None:
    from distill import quickstart

    def fake(out, plan, jobs):  # noqa: ANN001, ANN202 - each seed's comparison, as run_quickstart writes it
        seed = plan.seed
        rows = [{"name": "pose_teacher", "ap": 0.3, "miou": None, "steps": 9, "seed": seed},
                {"name": "seg_teacher", "ap": None, "miou": 0.5, "steps": 9, "seed": seed},
                {"name": "joint_student_gt", "ap": 0.2, "miou": 0.44, "steps": 5, "seed": seed},
                {"name": "joint_student_kd", "ap": 0.25 + 0.01 * seed, "miou": 0.46, "steps": 5, "seed": seed}]
        Path(out).mkdir(parents=True)
        (Path(out) / "compare.json").write_text(json.dumps(rows))
        return {"json": Path(out) / "compare.json"}

    monkeypatch.setattr(quickstart, "run_quickstart", fake)
    paths = quickstart.run_quickstart_seeds(tmp_path, _recipe(), [0, 1, 2])
    record = json.loads(paths["json"].read_text())
    kd = next(e for e in record["spread"] if e["name"] == "joint_student_kd")
    assert kd["seeds"] == [0, 1, 2] and kd["steps"] == [5, 5, 5]
    assert abs(kd["ap"]["mean"] - 0.26) < 1e-9 and (kd["ap"]["min"], kd["ap"]["max"]) == (0.25, 0.27)
    assert abs(record["margins"]["2"]["ap_vs_gt"] - 0.07) < 1e-9
    assert abs(record["margins"]["0"]["miou_of_teacher"] - 0.92) < 1e-9
    text = paths["markdown"].read_text()
    assert "| joint_student_kd | 0, 1, 2 | 5, 5, 5 | 0.260 (0.250-0.270) | 0.460 (0.460-0.460) |" in text
    assert "| 1 | 0.060 | 0.020 | 86.7 % | 92.0 % |" in text


def test_step_timer_batches_go_round_a_set_smaller_than_its_rounds() -> None:

    from distill.quickstart import _timing_batches

    samples = [{"image": torch.full((3, 4, 4), float(i))} for i in range(3)]
    batches = _timing_batches(samples, batch_size=2, workers=0, seed=0)
    seen = [next(batches)["image"].shape for _ in range(5)]  # one batch a pass, five passes
    assert seen == [(2, 3, 4, 4)] * 5
    with pytest.raises(ValueError, match="2 training samples cannot fill one batch of 4: raise --images"):
        next(_timing_batches(samples[:2], batch_size=4, workers=0, seed=0))
