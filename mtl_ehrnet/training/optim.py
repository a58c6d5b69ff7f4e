"""Optimizer and learning-rate schedule from a :class:`RunConfig`."""
from __future__ import annotations

import bisect
from typing import Iterable, List, Type

import torch
from torch import nn

from mtl_ehrnet.training.run_config import RunConfig


def build_optimizer(parameters: Iterable[nn.Parameter], config: RunConfig) -> torch.optim.Optimizer:
    params = [p for p in parameters if p.requires_grad]
    if config.optimizer == "sgd":
        return fused_if_supported(torch.optim.SGD, params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return fused_if_supported(kind, params, lr=config.lr, weight_decay=config.weight_decay)


def fused_if_supported(kind: Type[torch.optim.Optimizer], params: List[nn.Parameter], **hyper: float) -> torch.optim.Optimizer:
    """``kind(params, fused=True, **hyper)`` where this PyTorch has a fused kernel for the parameters'
    device, else the default implementation.

    On the CPU PyTorch otherwise picks the per-parameter loop: for pose_h-4's 416 tensors an Adam step
    took 54 ms looped, 38 ms with foreach and 15 ms fused (1 thread), of a ~450 ms training step.
    Older releases (fused Adam on the CPU came with 2.4) refuse ``fused`` at construction.
    """
    try:
        return kind(params, fused=True, **hyper)
    except (RuntimeError, TypeError, ValueError):
        return kind(params, **hyper)


def build_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR: linear warm-up, then step decay at epoch milestones, poly decay or constant."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = config.warmup_epochs * steps_per_epoch
    milestones = sorted(m * steps_per_epoch for m in config.milestones)

    def factor(step: int) -> float:
        scale = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if config.schedule == "step":
            return scale * config.gamma ** bisect.bisect_right(milestones, step)
        if config.schedule == "poly":
            return scale * max(0.0, 1.0 - step / total) ** config.poly_power
        return scale

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
