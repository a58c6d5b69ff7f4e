"""Exponential moving average of a model's weights (timm's ``--model-ema``), on PyTorch's AveragedModel.

Short runs end with weights that still jump from step to step; the average of the last few hundred steps
sits nearer the minimum. The engine validates and saves the average when ``RunConfig.ema_decay`` is set.
"""
from __future__ import annotations

from typing import Callable, List

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def check_decay(decay: float) -> None:
    """Raises ValueError unless ``decay`` lies in (0, 1) (the one check of ``RunConfig.ema_decay`` and
    :func:`build_ema`)."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay must be in (0, 1), got {decay}")


def warmup_decay(decay: float, updates: int) -> float:
    """The decay of update number ``updates`` (0-based): ``min(decay, (1 + n) / (10 + n))``.

    Without the warm-up a decay of 0.999 would keep the first step's weights in the average for thousands
    of steps, which a run of 2000 steps never gets past (TensorFlow's ExponentialMovingAverage and timm
    ramp the same way).
    """
    return min(decay, (1.0 + updates) / (10.0 + updates))


def _ema_update(
    decay: float, updates: Callable[[], int]
) -> Callable[[List[torch.Tensor], List[torch.Tensor], torch.Tensor], None]:
    """AveragedModel's ``multi_avg_fn``: one foreach lerp per group of floating tensors; integer buffers
    (batch-norm's ``num_batches_tracked``) take the model's value. ``updates`` returns the average's count
    from its host copy: the copy AveragedModel hands over lives on the model's device, and reading it would
    make every step wait for the GPU."""

    @torch.no_grad()
    def update(averaged: List[torch.Tensor], current: List[torch.Tensor], n_averaged: torch.Tensor) -> None:
        if torch.is_floating_point(averaged[0]):
            # The count includes the first call, which only copied the weights.
            torch._foreach_lerp_(averaged, current, 1.0 - warmup_decay(decay, updates() - 1))
        else:
            for target, source in zip(averaged, current):
                target.copy_(source)

    return update


def build_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An AveragedModel holding the EMA of ``model``'s parameters and buffers (batch-norm statistics too).

    ``ema.module`` is a copy of ``model``; call ``ema.update_parameters(model)`` after each optimizer step.
    """
    check_decay(decay)
    built: List[AveragedModel] = []
    # AveragedModel keeps ``n_averaged`` on the CPU (it is created without a device and never moved here).
    ema = AveragedModel(model, multi_avg_fn=_ema_update(decay, lambda: int(built[0].n_averaged)), use_buffers=True)
    built.append(ema)
    ema.module.eval()
    for parameter in ema.parameters():
        parameter.requires_grad_(False)
    return ema
