"""The quick start's budget is shared again before each run from the time really left."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from distill import quickstart
from distill.quickstart import QuickstartPlan, run_quickstart
from distill.quickstart_budget import STEP_CAPS, QuickstartBudget, StageSchedule, share_seconds


def _steps(s: StageSchedule) -> int:
    return s.epochs * s.steps_per_epoch


def _budget(shares=None, fixed: float = 0.0) -> QuickstartBudget:  # noqa: ANN001
    shares = shares or {"a": 0.5, "b": 0.25, "c": 0.25}
    return QuickstartBudget.plan(1000.0, 0.0, {n: 1.0 for n in shares}, {n: 50 for n in shares}, shares, fixed)


def test_slow_runs_shrink_the_runs_left_to_the_time_left() -> None:
    budget = _budget()
    assert [_steps(budget.schedules[n]) for n in "abc"] == [500, 250, 250]
    assert budget.replan(started=()) == budget.schedules  # nothing has run: the same plan
    budget.finish("a", seconds=750.0, elapsed_seconds=750.0)  # 1.5x its timed steps
    assert budget.speed_ratio == pytest.approx(1.5)
    budget.replan(started=())
    # 250 s are left for b and c, at 1.5 s a step: 83 steps each (250 each had made the whole run 1500 s),
    # in 3 epochs of 27 so that each is still validated three times.
    assert budget.schedules["b"] == budget.schedules["c"] == StageSchedule(3, 27, 1)
    assert 750 + sum(1.5 * _steps(budget.schedules[n]) for n in "bc") <= 1000
    budget.finish("b", seconds=81 * 0.5, elapsed_seconds=750 + 81 * 0.5)  # and a fast one gives time back
    budget.replan(started=())
    assert _steps(budget.schedules["c"]) > 81


def test_a_started_run_keeps_its_schedule_and_its_time() -> None:
    budget = _budget()
    budget.finish("a", seconds=500.0, elapsed_seconds=500.0)
    b = budget.schedules["b"]
    budget.replan(started={"b"})
    assert budget.schedules["b"] == b  # a resumed run must keep the schedule its checkpoints were made with
    assert _steps(budget.schedules["c"]) == 250  # 500 s left, 250 of them still b's


def test_fixed_costs_stay_reserved_at_the_measured_speed() -> None:
    budget = _budget(fixed=100.0)
    assert 850 <= sum(_steps(s) for s in budget.schedules.values()) <= 900  # 900 s left, in whole epochs
    budget.finish("a", seconds=2.0 * _steps(budget.schedules["a"]), elapsed_seconds=900.0)  # 2 s a step
    budget.replan(started=())
    # 100 s left, minus the cache and comparison at 2x (200 s): nothing left, so one step per validation.
    assert budget.schedules["b"] == budget.schedules["c"] == StageSchedule(3, 1, 1)


def test_the_distilled_student_trains_exactly_as_long_as_the_ground_truth_one() -> None:
    shares = {"joint_student_gt": 1.0, "joint_student_kd": 1.25, "z": 1.0}
    budget = QuickstartBudget.plan(1000.0, 0.0, {"joint_student_gt": 1.0, "joint_student_kd": 1.25, "z": 1.0},
                                   {n: 10_000 for n in shares}, shares, 0.0)
    assert budget.schedules["joint_student_kd"] == budget.schedules["joint_student_gt"]
    budget.finish("joint_student_gt", seconds=600.0, elapsed_seconds=600.0)  # twice its plan
    budget.replan(started=())
    assert budget.schedules["joint_student_kd"] == budget.schedules["joint_student_gt"]  # not shortened after the fact


def test_resumed_runs_do_not_set_the_speed() -> None:
    budget = _budget()
    budget.finish("a", seconds=10.0, elapsed_seconds=10.0, resumed=True)  # only the part after the resume
    assert budget.speed_ratio == 1.0


def test_budget_round_trips_through_plan_json(tmp_path: Path) -> None:
    budget = _budget(fixed=50.0)
    budget.finish("a", seconds=1.2 * _steps(budget.schedules["a"]), elapsed_seconds=620.0)
    budget.save(tmp_path / "plan.json", minutes=30.0)
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert (
        saved["minutes"] == 30.0 and set(saved["run_seconds"]) == {"a"} and saved["speed_ratio"] == pytest.approx(1.2)
    )
    assert QuickstartBudget.load(tmp_path / "plan.json") == budget
    # A plan written before re-planning existed keeps its schedules.
    (tmp_path / "old.json").write_text(
        json.dumps(
            {
                "schedules": {"a": {"epochs": 2, "steps_per_epoch": 5, "val_every": 1}},
                "minutes": 30.0,
                "seconds_per_step": {"a": 1.0},
                "train_seconds": 10.0,
            }
        )
    )
    old = QuickstartBudget.load(tmp_path / "old.json")
    assert old.replan(started=()) == {"a": StageSchedule(2, 5, 1)}


def test_quickstart_replans_each_run_from_the_time_really_left(tmp_path: Path, monkeypatch) -> None:
    """Every run takes twice its timed steps: the later runs get fewer steps, and the whole stays in budget."""
    clock = [0.0]
    monkeypatch.setattr(quickstart, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(quickstart, "seconds_per_step_each", lambda jobs, **kw: {name: 1.0 for name in jobs})
    plan = QuickstartPlan(
        images=6, image_size=(96, 64), input_size=64, seg_teacher="seg_h-4", batch_size=2, workers=0, minutes=30.0
    )
    got = {}

    def fake_run(name: str, out: Path, result: str, epochs: int, steps_per_epoch: int, **kwargs) -> None:  # noqa: ANN003
        got[name] = StageSchedule(epochs, steps_per_epoch, kwargs["val_every"])
        step = quickstart.REAL_STEP_FACTOR * (plan.kd_step_factor if name == "joint_student_kd" else 1.0)  # as planned
        clock[0] += 2.0 * step * epochs * steps_per_epoch
        out.mkdir(parents=True)
        for file in ("last.pt", result):
            (out / file).write_bytes(b"")

    monkeypatch.setattr(
        quickstart, "train_teacher", lambda kind, model, out, **kw: fake_run(out.name, out, "best.pt", **kw)
    )
    monkeypatch.setattr(
        quickstart, "train_student", lambda student, out, **kw: fake_run(out.name, out, "student.pt", **kw)
    )
    monkeypatch.setattr(quickstart, "compare_rows", lambda checkpoints, root: [])
    monkeypatch.setattr(quickstart, "write_comparison", lambda rows, out: {})
    monkeypatch.setattr(quickstart, "markdown", lambda rows, saved: "")
    monkeypatch.setattr(quickstart, "savings", lambda rows: {})
    run_quickstart(tmp_path, plan)
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert set(saved["run_seconds"]) == set(plan.runs) and saved["speed_ratio"] == pytest.approx(2.0)
    assert got["joint_student_kd"] == got["joint_student_gt"]
    # Without re-planning every run would have taken twice its share (~54 minutes). The first run overran its share
    # and the later ones absorbed it, leaving the cache and the comparison their time at the speed seen.
    ended = clock[0] + saved["speed_ratio"] * saved["fixed_seconds"]
    assert 0.9 * quickstart.BUDGET_RESERVE * 30 * 60 < ended <= quickstart.BUDGET_RESERVE * 30 * 60


def test_capped_runs_give_their_unused_time_to_the_others() -> None:
    shares = {"a": 0.5, "b": 0.25, "c": 0.25}
    seconds = share_seconds(1000.0, {n: 1.0 for n in shares}, shares, {"a": 100})
    assert seconds == pytest.approx({"a": 100.0, "b": 450.0, "c": 450.0})  # a's 400 unused seconds shared by b and c
    # A cap freed by another's cap binds in the next round; time no run can use is left over.
    seconds = share_seconds(1000.0, {n: 1.0 for n in shares}, shares, {"a": 100, "b": 300, "c": 50})
    assert seconds == pytest.approx({"a": 100.0, "b": 300.0, "c": 50.0})


def test_a_fast_machine_stops_every_run_at_its_cap() -> None:
    shares = {"a": 0.5, "b": 0.25, "c": 0.25}
    budget = QuickstartBudget.plan(
        1000.0,
        0.0,
        {n: 0.1 for n in shares},
        {"a": 72, "b": 80, "c": 152},
        shares,
        0.0,
        max_steps={"a": 2592, "b": 560, "c": 912},
    )
    assert {n: (s.epochs, s.steps_per_epoch) for n, s in budget.schedules.items()} == {
        "a": (36, 72),
        "b": (7, 80),
        "c": (6, 152),
    }
    assert budget.capped() == ["a", "b", "c"]
    budget.finish(
        "a", seconds=100.0, elapsed_seconds=100.0
    )  # under half its timed steps: b and c still stop at their caps
    assert {n: _steps(budget.replan(started=())[n]) for n in "bc"} == {"b": 560, "c": 912}
    # A slow machine shares the budget as without caps until a run reaches its cap.
    slow = QuickstartBudget.plan(
        1000.0,
        0.0,
        {n: 1.0 for n in shares},
        {n: 10_000 for n in shares},
        shares,
        0.0,
        max_steps={"a": 2592, "b": 200, "c": 912},
    )
    # b takes its 200 s, a and c share the other 800 s 2:1 (in three epochs each, hence 531 and 264, not 533 and 266).
    assert [slow.schedules[n] for n in "abc"] == [
        StageSchedule(3, 177, 1),
        StageSchedule(3, 66, 1),
        StageSchedule(3, 88, 1),
    ]
    assert slow.capped() == []  # b's 198 steps fall short of its cap only by the rounding to whole epochs


def test_quickstart_caps_scale_and_switch_off() -> None:
    plan = QuickstartPlan()
    assert plan.max_steps == {n: STEP_CAPS[n] for n in plan.runs}
    assert QuickstartPlan(step_cap_scale=0.5).max_steps["seg_teacher"] == STEP_CAPS["seg_teacher"] // 2
    assert QuickstartPlan(step_cap_scale=0.0).max_steps == {}
    with pytest.raises(ValueError, match="step_cap_scale"):
        QuickstartPlan(step_cap_scale=-1.0)


def test_the_cache_cost_counts_every_size_and_view() -> None:
    assert QuickstartPlan().cache_passes == 0.0  # online teachers: no cache to build
    assert QuickstartPlan(teacher_cache=True).cache_passes == pytest.approx(1.5**2)  # one letterbox at 1.5x the input
    mirrored = QuickstartPlan(teacher_cache=True, cache_input_size=(128, 192), cache_mirrored=True, cache_blend=True)
    assert mirrored.cache_passes == pytest.approx(2 * (1 + 1.5**2))
    assert QuickstartPlan(
        teacher_cache=True, cache_input_size=(128, 192), cache_mirrored=True, teacher_flip=True
    ).cache_passes == pytest.approx(4 * (1 + 1.5**2))
