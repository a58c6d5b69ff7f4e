"""Loss balancing across (task, GT|KD) terms: fixed weights, uncertainty weighting, DWA.

Every balancer maps the dict of raw terms to a dict of weighted terms with the same names; the training
loss is their sum, and both the terms and their weights are logged by name.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn


class FixedWeights(nn.Module):
    """``w_name * term`` with a weight per term name (1 for unnamed terms)."""

    def __init__(self, weights: Optional[Mapping[str, float]] = None) -> None:
        super().__init__()
        self.weights = dict(weights or {})

    def current(self, names: Sequence[str]) -> Dict[str, float]:
        return {n: float(self.weights.get(n, 1.0)) for n in names}

    def forward(self, terms: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {n: self.weights.get(n, 1.0) * t for n, t in terms.items()}


class UncertaintyWeighting(nn.Module):
    """Kendall et al. 2018: ``exp(-s_i) * L_i + s_i`` with a learned log-variance ``s_i`` per term.

    The ``s_i`` are parameters: give this module's parameters to the optimizer with the model's.
    """

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.log_vars = nn.Parameter(torch.zeros(len(self.names)))

    def current(self, names: Sequence[str]) -> Dict[str, float]:
        return {n: math.exp(-float(self.log_vars[self.names.index(n)])) for n in names if n in self.names}

    def forward(self, terms: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        out = {}
        for name, term in terms.items():
            if name not in self.names:
                raise KeyError(f"uncertainty weighting has no weight for term {name!r}; known: {self.names}")
            s = self.log_vars[self.names.index(name)]
            out[name] = torch.exp(-s) * term + s
        return out


class DynamicWeightAverage(nn.Module):
    """Liu et al. 2019 (DWA): ``w_i = N * softmax(r_i / T)`` with ``r_i = L_i(t-1) / L_i(t-2)`` from each
    term's mean over the previous two epochs; weights are 1 for the first two epochs.

    Call :meth:`end_epoch` after every epoch (the student trainer does).
    """

    def __init__(self, names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__()
        self.names = list(names)
        self.temperature = temperature
        self.register_buffer("history", torch.zeros(2, len(self.names)))  # epoch means: t-2, t-1
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("running", torch.zeros(len(self.names)))
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("weights", torch.ones(len(self.names)))

    def current(self, names: Sequence[str]) -> Dict[str, float]:
        return {n: float(self.weights[self.names.index(n)]) for n in names if n in self.names}

    def forward(self, terms: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        with torch.no_grad():
            self.running += torch.stack([terms[n].detach().float() for n in self.names])
            self.count += 1
        return {n: self.weights[self.names.index(n)] * t for n, t in terms.items()}

    def end_epoch(self) -> None:
        """Rolls the epoch means and recomputes the weights. Under ``torch.distributed`` the means are over
        every rank's steps (every rank must call this), so all ranks weigh the terms alike."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.running)
            dist.all_reduce(self.count)
        mean = self.running / self.count.clamp(min=1)
        self.history = torch.stack([self.history[1], mean])
        self.epochs_seen += 1
        self.running.zero_()
        self.count.zero_()
        if self.epochs_seen >= 2:
            ratio = self.history[1] / self.history[0].clamp(min=1e-12)
            self.weights = len(self.names) * torch.softmax(ratio / self.temperature, dim=0)
