"""Loss terms summed where they were computed, read back only when they are logged.

Reading a CUDA tensor's value (``float(t)``, ``.item()``) waits for every kernel queued before it; doing so
for each term of each step kept the host from running ahead of the GPU. The engine adds each step's terms
here and reads their means once per logging interval.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch


class RunningTerms:
    """Per-name sums of scalar loss terms on their device, and the host-side sums of what was read."""

    def __init__(self) -> None:
        # Steps whose terms had the same names share one stacked sum (normally a single entry).
        self._pending: Dict[Tuple[str, ...], Tuple[torch.Tensor, torch.Tensor]] = {}
        self._epoch_sums: Dict[str, float] = {}
        self._epoch_counts: Dict[str, float] = {}

    def add(self, terms: Dict[str, torch.Tensor], keep: Optional[torch.Tensor] = None) -> None:
        """Adds one step's scalar terms (0-dim tensors on one device) without reading them.

        Args:
            keep: a 0-dim bool on the same device; where False the step counts neither in the sums nor in the
                number of steps (a step the optimizer dropped on the device, whose terms are not finite).
        """
        names = tuple(terms)
        values = torch.stack([t.detach().float() for t in terms.values()])
        weight = torch.ones((), device=values.device) if keep is None else keep.float()
        if keep is not None:
            values = torch.where(keep, values, torch.zeros_like(values))
        total, steps = self._pending.get(names, (torch.zeros_like(values), torch.zeros_like(weight)))
        self._pending[names] = (total + values, steps + weight)

    def read(self) -> Dict[str, float]:
        """The mean of each term over the steps added since the last read (one device-to-host copy), which
        also count into :meth:`epoch_means`; empty when no step was added."""
        if not self._pending:
            return {}
        groups = list(self._pending.items())
        values = iter(torch.cat([torch.cat([total, steps.reshape(1)]) for _, (total, steps) in groups]).tolist())
        sums: Dict[str, float] = {}
        counts: Dict[str, float] = {}
        for names, _ in groups:
            group_sums = [next(values) for _ in names]
            steps = next(values)
            for name, value in zip(names, group_sums):
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0.0) + steps
        self._pending.clear()
        for name, value in sums.items():
            self._epoch_sums[name] = self._epoch_sums.get(name, 0.0) + value
            self._epoch_counts[name] = self._epoch_counts.get(name, 0.0) + counts[name]
        return {name: sums[name] / counts[name] for name in sums if counts[name]}

    def epoch_means(self) -> Dict[str, float]:
        """Each term's mean over every step of the epoch so far (reading what is pending), then starts a
        new epoch."""
        self.read()
        means = {name: value / self._epoch_counts[name] for name, value in self._epoch_sums.items()
                 if self._epoch_counts[name]}
        self._epoch_sums.clear()
        self._epoch_counts.clear()
        return means
