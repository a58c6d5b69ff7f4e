"""Each quick-start run's steps as epochs, and the one factor that fits them into a wall-clock budget."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional


@dataclass(frozen=True)
class StageSchedule:
    """One run's length: ``epochs`` of ``steps_per_epoch`` steps (None: whole passes over the data),
    validated every ``val_every`` epochs."""

    epochs: int
    steps_per_epoch: Optional[int]
    val_every: int


def schedule_for_steps(steps: int, full_epoch_steps: int, validations: int = 3) -> StageSchedule:
    """``steps`` as equal epochs of at most one pass over the data, at least ``validations`` of them so that the
    run is validated that often (the last epoch included).

    The run trains ``epochs * steps_per_epoch`` steps: ``steps`` itself when the epochs divide it, else at most
    ``epochs - 1`` more. The count does not hinge on the data's size, so a generated set one batch larger or
    smaller (another seed) trains the same steps instead of losing a whole epoch.
    """
    if steps < 1 or full_epoch_steps < 1 or validations < 1:
        raise ValueError(f"need steps, full_epoch_steps and validations >= 1, got {steps}, {full_epoch_steps}, "
                         f"{validations}")
    epochs = max(validations, -(-steps // full_epoch_steps))
    per_epoch = -(-steps // epochs)
    return StageSchedule(epochs, per_epoch, max(1, epochs // validations))


def fitting_scale(steps: Mapping[str, int], step_seconds: Mapping[str, float], seconds: float,
                  wall: Optional[Callable[[Mapping[str, float]], float]] = None) -> float:
    """The factor (at most 1) on every run's ``steps`` that fits them, at ``step_seconds`` each, into ``seconds``.

    ``wall`` turns each run's seconds into the wall-clock time of them all (default: their sum, one after
    another); it must grow in proportion to them, as a schedule of runs side by side does.

    Raises:
        ValueError: when no time is left for training.
    """
    if seconds <= 0:
        raise ValueError(f"no time left for training ({seconds:.0f} s): raise --minutes")
    wall = (lambda seconds_each: sum(seconds_each.values())) if wall is None else wall
    needed = wall({name: n * step_seconds[name] for name, n in steps.items()})
    return min(1.0, seconds / needed) if needed > 0 else 1.0


def scaled_steps(steps: Mapping[str, int], scale: float, validations: int) -> Dict[str, int]:
    """Each run's steps times ``scale``, at least one per validation."""
    return {name: max(validations, int(n * scale + 1e-9)) for name, n in steps.items()}
