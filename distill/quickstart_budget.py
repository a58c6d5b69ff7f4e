"""Turns the quick start's wall-clock budget into epochs and steps for each of its six training runs.

Each run's step is timed on this machine first (:func:`mtl_ehrnet.training.step_timer.seconds_per_step_each`),
the fixed costs (teacher-output cache, the final comparison) are set aside, and what is left is shared
between the runs in fixed proportions, no run taking more than its step cap (:data:`STEP_CAPS`). Before
each run, the runs that have not started share again what is really left, at the speed the finished runs
had (:class:`QuickstartBudget`). The budget is written to ``plan.json`` so that a resumed quick start keeps
the schedules of the runs that have started.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Collection, Dict, List, Mapping, Optional, Union

PathLike = Union[str, Path]

# Share of the training time per run. Teachers come first: distilling from a teacher that is worse than
# what the student learns from labels alone hurts (measured in a 30-minute quick start: the segmentation
# teacher, given 8 % and 129 steps, reached mIoU 0.23, and the student distilled from it 0.41 against 0.43
# without it). Pose needs several times the steps segmentation does (seg_h-4 reaches mIoU 0.34 in 400
# steps, pose_h-4 AP 0.004 in 460 and 0.13 in 2760). The two joint students get the same number of steps
# (their shares differ by the KD step's extra cost), so that the comparison measures distillation, not
# training length.
# A distillation step (cached teacher maps, KD terms, tag KD's grouping of the teacher's joints) against a
# ground-truth joint step: 1.23-1.26 in the training epochs of three 30-minute quick starts (e.g. 9.9
# against 12.3 images/s). An earlier measurement outside the quick start gave 1.06.
KD_STEP_FACTOR = 1.25
# With the teachers run online on every batch instead (no cache): 1.77 in a 303-step probe on a quick
# start's data (7.3 against 12.9 images/s).
ONLINE_KD_STEP_FACTOR = 1.75
_JOINT_SHARE = 0.19
SHARES: Dict[str, float] = {
    "pose_teacher": 0.29,
    "seg_teacher": 0.18,
    "pose_student_gt": 0.08,
    "seg_student_gt": 0.05,
    "joint_student_gt": _JOINT_SHARE,
}
# When the joint students start from the pose teacher (same width), that teacher is also the separate pose
# student, and its steps are the joint students' pose start: it gets what the separate pose student and
# part of the joint students' time had. The joint students still need a few hundred steps to learn
# segmentation and to win back the pose their first full-rate steps cost (AP 0.217 -> 0.093 after 101
# steps, 0.177 after 303, 82 % of the teacher; with 426 steps, 97 %), so they get 0.165 each (0.15
# before). The segmentation teacher gets 0.27 (0.20 before): with 240 steps it scored mIoU 0.393, below
# the ground-truth joint student's 0.409, and the distilled student lost mIoU; with 320 it scored
# 0.426-0.428 in three quick starts. The pose teacher gets 0.30 (0.40 before): its AP on the joint split
# was 0.183 after 864 steps and 0.182 after 1008.
_WARM_JOINT_SHARE = 0.165
WARM_START_SHARES: Dict[str, float] = {
    "pose_teacher": 0.30,
    "seg_teacher": 0.27,
    "seg_student_gt": 0.05,
    "joint_student_gt": _WARM_JOINT_SHARE,
}


def with_distilled_share(shares: Mapping[str, float], kd_step_factor: float) -> Dict[str, float]:
    """``shares`` with the distilled student's: the ground-truth joint student's times its step's extra cost
    (``kd_step_factor``), so that both train the same number of steps."""
    return {**shares, "joint_student_kd": shares["joint_student_gt"] * kd_step_factor}


# The most steps (batch 8) each run takes, at which the quick start's recipe meets its bars (the distilled
# joint student ahead of the ground-truth one on both tasks, and at 90 % of each teacher). A machine that
# cannot afford them shares its budget by the shares above; a faster one stops there and ends early
# instead of training every run longer: with 3.3x the steps (on a 3.5x faster machine) the segmentation
# teacher rose from mIoU 0.451 to 0.639 and the joint students, which learn segmentation on half of each
# batch with its terms weighted 0.01, only from 0.411 to 0.489 (77 % of the teacher, 91 % before). Capped,
# a run's result no longer depends on the machine's speed. With these caps (seeds 0 / 1)
# the teachers scored AP 0.313 / 0.295 and mIoU 0.511 / 0.500, the ground-truth joint student 0.227 / 0.249
# and 0.464 / 0.464, the distilled one 0.311 / 0.327 and 0.504 / 0.499 (99-111 % of the teachers). With the
# segmentation teacher at 560 steps and the joint students at 912 the distilled student
# led the ground-truth one on mIoU by only 0.001 with seed 0 (0.459 against 0.458, teacher 0.479).
STEP_CAPS: Dict[str, int] = {
    "pose_teacher": 2592,
    "seg_teacher": 720,
    "pose_student_gt": 2592,
    "seg_student_gt": 320,
    "joint_student_gt": 1216,
    "joint_student_kd": 1216,
}
VALIDATIONS = 3  # per run, the last epoch included


@dataclass(frozen=True)
class StageSchedule:
    """One run's length: ``epochs`` of ``steps_per_epoch`` steps (None: whole passes over the data),
    validated every ``val_every`` epochs."""

    epochs: int
    steps_per_epoch: Optional[int]
    val_every: int


def schedule_for(
    seconds: float,
    step_seconds: float,
    full_epoch_steps: int,
    validations: int = VALIDATIONS,
    max_steps: Optional[int] = None,
) -> StageSchedule:
    """The longest schedule of at most ``max_steps`` steps that fits ``seconds`` at ``step_seconds`` per step.

    Epochs are whole passes over the data when there is time for ``validations`` of them; otherwise
    they are shortened so that the run is still validated ``validations`` times.
    """
    if step_seconds <= 0 or full_epoch_steps < 1:
        raise ValueError(f"need step_seconds > 0 and full_epoch_steps >= 1, got {step_seconds}, {full_epoch_steps}")
    steps = int(seconds / step_seconds + 1e-6)  # a run given exactly its cap's time gets the cap, float error or not
    steps = max(validations, steps if max_steps is None else min(max_steps, steps))
    per_epoch = min(full_epoch_steps, max(1, steps // validations))
    epochs = max(1, steps // per_epoch)
    return StageSchedule(epochs, per_epoch, max(1, epochs // validations))


def share_seconds(
    seconds: float, step_seconds: Mapping[str, float], shares: Mapping[str, float], max_steps: Mapping[str, int]
) -> Dict[str, float]:
    """``seconds`` shared in proportion to ``shares``, no run given more than its ``max_steps`` take.

    What a capped run does not need goes to the others, in the same proportions, until each has its share
    or its cap; time that no run can use is left over.
    """
    given: Dict[str, float] = {}
    waiting = dict(shares)
    while waiting:
        total = sum(waiting.values())
        capped = {
            n: max_steps[n] * step_seconds[n]
            for n, share in waiting.items()
            if n in max_steps and max_steps[n] * step_seconds[n] <= seconds * share / total
        }
        if not capped:
            given.update({n: seconds * share / total for n, share in waiting.items()})
            break
        given.update(capped)
        seconds -= sum(capped.values())
        for name in capped:
            del waiting[name]
    return given


def split_budget(
    train_seconds: float,
    step_seconds: Mapping[str, float],
    full_epoch_steps: Mapping[str, int],
    shares: Mapping[str, float],
    max_steps: Optional[Mapping[str, int]] = None,
) -> Dict[str, StageSchedule]:
    """Schedules for every run in ``shares`` from the time left for training (seconds), each run of at
    most its ``max_steps`` (none: no cap)."""
    if train_seconds <= 0:
        raise ValueError(f"no time left for training ({train_seconds:.0f} s): raise the budget (--minutes)")
    caps = dict(max_steps or {})
    seconds = share_seconds(train_seconds, step_seconds, shares, caps)
    return {
        name: schedule_for(seconds[name], step_seconds[name], full_epoch_steps[name], max_steps=caps.get(name))
        for name in shares
    }


@dataclass
class QuickstartBudget:
    """The quick start's time as it is spent: planned once from timed steps, re-planned before each run.

    A machine's speed can change between the timing and the runs: the runs of two 30-minute quick starts
    took 0.86-1.00x and 1.12-1.45x their timed steps, and the second ended after 35 minutes. So
    before each run, the runs that have not started share the seconds really left, at the speed the
    finished runs really had (their validations and checkpoints included).

    Attributes:
        total_seconds: the wall-clock budget that is planned for (the reserve already taken off).
        step_seconds: timed seconds per step of each run.
        full_epoch_steps: steps of a whole pass over each run's training data.
        shares: each run's share of the training time.
        fixed_seconds: the teacher-output cache and the comparison, at the timed speed.
        schedules: each run's schedule; a run's is fixed once it has started.
        elapsed_seconds: wall time of the quick start when the plan was made or the last run finished.
        run_seconds: wall time of each finished run.
        resumed: finished runs that were resumed (their time is partial, so they do not set the speed).
        same_steps: runs that train exactly as long as another (the distilled student as long as the
            ground-truth one, so that the comparison measures distillation, not training length).
        replanning: False for a plan written before re-planning existed, whose schedules are kept.
        max_steps: the most steps each run takes (:data:`STEP_CAPS`); time they leave unused is not spent.
    """

    total_seconds: float
    step_seconds: Dict[str, float]
    full_epoch_steps: Dict[str, int]
    shares: Dict[str, float]
    fixed_seconds: float
    schedules: Dict[str, StageSchedule] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    run_seconds: Dict[str, float] = field(default_factory=dict)
    resumed: List[str] = field(default_factory=list)
    same_steps: Dict[str, str] = field(default_factory=lambda: {"joint_student_kd": "joint_student_gt"})
    replanning: bool = True
    max_steps: Dict[str, int] = field(default_factory=dict)

    @classmethod
    def plan(
        cls,
        total_seconds: float,
        elapsed_seconds: float,
        step_seconds: Mapping[str, float],
        full_epoch_steps: Mapping[str, int],
        shares: Mapping[str, float],
        fixed_seconds: float,
        max_steps: Optional[Mapping[str, int]] = None,
    ) -> "QuickstartBudget":
        """The first plan; refused when the budget is already spent."""
        budget = cls(
            total_seconds,
            dict(step_seconds),
            dict(full_epoch_steps),
            dict(shares),
            fixed_seconds,
            elapsed_seconds=elapsed_seconds,
            max_steps=dict(max_steps or {}),
        )
        budget.schedules = split_budget(
            budget.seconds_left(()), budget.step_seconds, budget.full_epoch_steps, budget.shares, budget.max_steps
        )
        budget._pin()
        return budget

    def capped(self) -> List[str]:
        """The runs whose schedule is their step cap."""
        return [n for n in self.schedules if n in self.max_steps and self.planned_steps(n) >= self.max_steps[n]]

    def planned_steps(self, name: str) -> int:
        """A run's steps in its schedule."""
        s = self.schedules[name]
        return s.epochs * (s.steps_per_epoch or self.full_epoch_steps[name])

    def planned_seconds(self, name: str) -> float:
        """A run's length at the timed speed."""
        return self.planned_steps(name) * self.step_seconds[name]

    @property
    def speed_ratio(self) -> float:
        """Wall time of the runs finished in one go against their timed steps (1 before any has)."""
        whole = [n for n in self.run_seconds if n not in self.resumed]
        planned = sum(self.planned_seconds(n) for n in whole)
        return sum(self.run_seconds[n] for n in whole) / planned if planned > 0 else 1.0

    def seconds_left(self, running: Collection[str]) -> float:
        """Training seconds left for the runs that have not started (``running``: started, not finished)."""
        ratio = self.speed_ratio
        return (
            self.total_seconds
            - self.elapsed_seconds
            - ratio * (self.fixed_seconds + sum(self.planned_seconds(n) for n in running))
        )

    def replan(self, started: Collection[str]) -> Dict[str, StageSchedule]:
        """Shares the time left between the runs that have neither finished nor ``started``.

        With no time left, each such run gets the shortest schedule (one step per validation).
        """
        running = [n for n in self.shares if n in started and n not in self.run_seconds]
        waiting = [n for n in self.shares if n not in started and n not in self.run_seconds]
        if waiting and self.replanning:
            left = max(0.0, self.seconds_left(running))
            ratio = self.speed_ratio
            step = {n: ratio * self.step_seconds[n] for n in waiting}
            seconds = share_seconds(left, step, {n: self.shares[n] for n in waiting}, self.max_steps)
            for name in waiting:
                self.schedules[name] = schedule_for(
                    seconds[name], step[name], self.full_epoch_steps[name], max_steps=self.max_steps.get(name)
                )
            self._pin(waiting)
        return dict(self.schedules)

    def finish(self, name: str, seconds: float, elapsed_seconds: float, resumed: bool = False) -> None:
        """Records a finished run's wall time and the quick start's."""
        self.run_seconds[name] = seconds
        self.elapsed_seconds = elapsed_seconds
        if resumed and name not in self.resumed:
            self.resumed.append(name)

    def _pin(self, waiting: Optional[Collection[str]] = None) -> None:
        for name, leader in self.same_steps.items():
            if name in self.schedules and leader in self.schedules and (waiting is None or name in waiting):
                self.schedules[name] = self.schedules[leader]

    def save(self, path: PathLike, **details: object) -> None:
        """Writes the budget to ``path`` (``plan.json``), with ``details`` for the reader."""
        data = asdict(self)
        data["seconds_per_step"] = data.pop("step_seconds")  # the name plan.json has always used
        Path(path).write_text(json.dumps({**details, **data, "speed_ratio": self.speed_ratio}, indent=2))

    @classmethod
    def load(cls, path: PathLike) -> "QuickstartBudget":
        data = json.loads(Path(path).read_text())
        schedules = {name: StageSchedule(**s) for name, s in data["schedules"].items()}
        if "total_seconds" not in data:  # written before re-planning: its schedules stand
            return cls(0.0, data["seconds_per_step"], {}, {}, 0.0, schedules, replanning=False)
        names = {f.name for f in fields(cls)} - {"step_seconds"}
        budget = cls(step_seconds=data["seconds_per_step"], **{k: v for k, v in data.items() if k in names})
        budget.schedules = schedules
        return budget
