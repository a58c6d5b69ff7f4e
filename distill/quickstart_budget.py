"""Turns the quick start's wall-clock budget into epochs and steps for each of its six training runs.

Each run's step is timed on this machine first (:func:`mtl_ehrnet.training.step_timer.seconds_per_step_each`),
the fixed costs (teacher-output cache, validation, the final comparison) are set aside, and what is
left is shared between the runs in fixed proportions. The result is written to ``plan.json`` so that a
resumed quick start keeps the same schedules.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

PathLike = Union[str, Path]

# Share of the training time per run. Teachers come first: distilling from a teacher that is worse than
# what the student learns from labels alone hurts (measured in a 30-minute quick start: the segmentation
# teacher, given 8 % and 129 steps, reached mIoU 0.23, and the student distilled from it 0.41 against 0.43
# without it). Pose needs several times the steps segmentation does (seg_h-4 reaches mIoU 0.34 in 400
# steps, pose_h-4 AP 0.004 in 460 and 0.13 in 2760). The two joint students get the same number of steps
# (their shares differ by the KD step's extra cost), so that the comparison measures distillation, not
# training length.
# A distillation step (cached teacher maps, KD terms, tag KD's grouping of the teacher's joints) against a
# ground-truth joint step: 1.23-1.26 in the training epochs of three 30-minute quick starts (qs3, qs5, qs6;
# e.g. 9.9 against 12.3 images/s). An earlier measurement outside the quick start gave 1.06.
KD_STEP_FACTOR = 1.25
_JOINT_SHARE = 0.19
SHARES: Dict[str, float] = {
    "pose_teacher": 0.29, "seg_teacher": 0.18, "pose_student_gt": 0.08, "seg_student_gt": 0.05,
    "joint_student_gt": _JOINT_SHARE, "joint_student_kd": _JOINT_SHARE * KD_STEP_FACTOR,
}
# When the joint students start from the pose teacher (same width), that teacher is also the separate pose
# student, and its steps are the joint students' pose start: it gets what the separate pose student and
# part of the joint students' time had. The joint students still need a few hundred steps to learn
# segmentation and to recover from the new head's first steps (a 180-step probe: AP 0.26 -> 0.17 -> 0.22).
_WARM_JOINT_SHARE = 0.15
WARM_START_SHARES: Dict[str, float] = {
    "pose_teacher": 0.40, "seg_teacher": 0.20, "seg_student_gt": 0.06,
    "joint_student_gt": _WARM_JOINT_SHARE, "joint_student_kd": _WARM_JOINT_SHARE * KD_STEP_FACTOR,
}
VALIDATIONS = 3  # per run, the last epoch included


@dataclass(frozen=True)
class StageSchedule:
    """One run's length: ``epochs`` of ``steps_per_epoch`` steps (None: whole passes over the data),
    validated every ``val_every`` epochs."""

    epochs: int
    steps_per_epoch: Optional[int]
    val_every: int


def schedule_for(seconds: float, step_seconds: float, full_epoch_steps: int, validations: int = VALIDATIONS) -> StageSchedule:
    """The longest schedule that fits ``seconds`` at ``step_seconds`` per step.

    Epochs are whole passes over the data when there is time for ``validations`` of them; otherwise
    they are shortened so that the run is still validated ``validations`` times.
    """
    if step_seconds <= 0 or full_epoch_steps < 1:
        raise ValueError(f"need step_seconds > 0 and full_epoch_steps >= 1, got {step_seconds}, {full_epoch_steps}")
    steps = max(validations, int(seconds / step_seconds))
    per_epoch = min(full_epoch_steps, max(1, steps // validations))
    epochs = max(1, steps // per_epoch)
    return StageSchedule(epochs, per_epoch, max(1, epochs // validations))


def split_budget(train_seconds: float, step_seconds: Mapping[str, float], full_epoch_steps: Mapping[str, int],
                 shares: Mapping[str, float] = SHARES) -> Dict[str, StageSchedule]:
    """Schedules for every run in ``shares`` from the time left for training (seconds)."""
    if train_seconds <= 0:
        raise ValueError(f"no time left for training ({train_seconds:.0f} s): raise the budget (--minutes)")
    total = sum(shares.values())
    return {name: schedule_for(train_seconds * share / total, step_seconds[name], full_epoch_steps[name])
            for name, share in shares.items()}


def save_schedules(path: PathLike, schedules: Mapping[str, StageSchedule], details: Mapping[str, object]) -> None:
    Path(path).write_text(json.dumps({"schedules": {k: asdict(v) for k, v in schedules.items()}, **details}, indent=2))


def load_schedules(path: PathLike) -> Dict[str, StageSchedule]:
    data = json.loads(Path(path).read_text())
    return {name: StageSchedule(**fields) for name, fields in data["schedules"].items()}
