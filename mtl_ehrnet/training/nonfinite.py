"""Steps whose loss is not finite: dropped, counted, reported, and the run stopped when they persist.

Two ways of dropping a step:

* **On the device** (no read-back): a fused optimizer's kernel takes the ``found_inf`` flag that a GradScaler
  hands it and then leaves the weights, its moments and its step count as they were. :class:`NonFiniteGuard`
  hands it the step's own flag, keeps its counts on the device and reads them when the engine next reads its
  loss terms (each logging step, each epoch end). The step still counts in the schedule, as a GradScaler's
  skipped steps do.
* **On the host** (one read-back), everywhere else: an unfused optimizer, an fp16 GradScaler (which owns the
  flag), the optimizer's very first step (fused SGD lays out its momentum buffers on the host at that step), or
  several processes with a loss module that trains parameters of its own (which of them got a gradient is
  agreed on the host). The engine skips the step before the optimizer sees it.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional

import torch

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised after ``max_nonfinite`` consecutive steps with a NaN or infinite loss."""


class NonFiniteGuard:
    """Counts dropped steps; raises :class:`NonFiniteLossError` after ``max_nonfinite`` in a row.

    Args:
        max_nonfinite: the consecutive dropped steps that stop the run.
        report: ``(step_in_epoch, {"steps": n, **last dropped step's terms})`` for each report of dropped
            steps (the engine writes it to the run's log).
        last_checkpoint: named in the error, as the point to resume from.
    """

    def __init__(self, max_nonfinite: int, report: Callable[[int, Dict[str, float]], None], last_checkpoint: str):
        self.max_nonfinite = max_nonfinite
        self.report = report
        self.last_checkpoint = last_checkpoint
        self.skipped_total = 0
        self._consecutive = 0
        # Device-side counts of the steps dropped since the last read: [dropped, in a row now, longest row,
        # step_in_epoch of the last dropped one, *its terms].
        self._pending: Optional[torch.Tensor] = None
        self._names: List[str] = []

    @staticmethod
    def can_drop_on_device(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                           host_agreed_parameters: bool) -> bool:
        """Whether this step can be dropped by the optimizer's kernel (see the module docstring)."""
        return (
            getattr(optimizer, "_step_supports_amp_scaling", False)
            and not scaler.is_enabled()
            and bool(optimizer.state)
            and not host_agreed_parameters
        )

    def mark(self, nonfinite: torch.Tensor, terms: Dict[str, torch.Tensor], step_in_epoch: int) -> None:
        """Records on the device whether this step is dropped.

        Args:
            nonfinite: 0-dim float, 1 where the step is dropped (agreed over the ranks).
            terms: the step's loss terms (0-dim), kept for the report where it is dropped.
        """
        values = torch.stack([t.detach().float() for t in terms.values()])
        if self._pending is None or list(terms) != self._names:
            self.read()
            self._names = list(terms)
            zeros = torch.zeros(4, device=values.device)
            zeros[1] = self._consecutive
            zeros[2] = self._consecutive
            self._pending = torch.cat([zeros, torch.zeros_like(values)])
        dropped, row, longest, last_step = self._pending[:4].unbind()
        row = (row + 1) * nonfinite
        last_step = torch.where(nonfinite > 0, step_in_epoch, last_step)
        head = torch.stack([dropped + nonfinite, row, torch.maximum(longest, row), last_step])
        tail = torch.where(nonfinite > 0, values, self._pending[4:])
        self._pending = torch.cat([head, tail])

    def read(self) -> None:
        """Reads what :meth:`mark` recorded (one copy), reports it and raises where the row is too long."""
        if self._pending is None:
            return
        dropped, row, longest, last_step, *values = self._pending.tolist()
        self._pending = None
        self._consecutive = int(row)
        if dropped:
            self.skipped_total += int(dropped)
            logger.warning("%d non-finite losses: steps skipped (last at step %d)", int(dropped), int(last_step))
            self.report(int(last_step), {"steps": int(dropped), **dict(zip(self._names, values))})
        if longest >= self.max_nonfinite:
            self._raise(int(longest))

    def dropped_on_host(self, terms: Dict[str, torch.Tensor], step_in_epoch: int) -> None:
        """Counts a step the engine skipped itself (after reading its flag), reports it, raises where the row
        is too long."""
        self.read()
        self._consecutive += 1
        self.skipped_total += 1
        logger.warning("non-finite loss at step %d: step skipped", step_in_epoch)
        self.report(step_in_epoch, {"steps": 1, **{k: float(v.detach()) for k, v in terms.items()}})
        if self._consecutive >= self.max_nonfinite:
            self._raise(self._consecutive)

    def stepped_on_host(self) -> None:
        """A step the host saw was finite ends the row."""
        self.read()
        self._consecutive = 0

    def _raise(self, row: int) -> None:
        raise NonFiniteLossError(
            f"{row} consecutive non-finite losses; lower the learning rate or check the data; the last good "
            f"checkpoint is {self.last_checkpoint}"
        )
