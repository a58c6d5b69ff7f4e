"""Optimizer and learning-rate schedule from a :class:`RunConfig`."""
from __future__ import annotations

import bisect
from typing import Any, Collection, Dict, Iterable, List, Mapping, Optional, Sequence, Type

import torch
from torch import nn

from mtl_ehrnet.training.run_config import RunConfig


def build_optimizer(
    parameters: Iterable[nn.Parameter], config: RunConfig, names: Optional[Sequence[str]] = None
) -> torch.optim.Optimizer:
    """The run's optimizer over the trainable ``parameters``; ``names`` (one per parameter) place each in
    its ``config.lr_factors`` group."""
    params = list(parameters)
    if names is None:
        if config.lr_factors:
            raise ValueError(f"lr_factors {config.lr_factors} need the parameters' names")
        names = [""] * len(params)
    if len(names) != len(params):
        raise ValueError(f"{len(names)} names for {len(params)} parameters")
    groups: Dict[float, List[nn.Parameter]] = {}
    for name, p in zip(names, params):
        if p.requires_grad:
            groups.setdefault(lr_factor(name, config.lr_factors), []).append(p)
    # One group per factor; a single group is passed as a plain list so that nothing changes without factors.
    grouped = (
        groups.get(1.0, [])
        if set(groups) <= {1.0}
        else [{"params": ps, "lr": config.lr * f} for f, ps in groups.items()]
    )
    if config.optimizer == "sgd":
        return fused_if_supported(
            torch.optim.SGD, grouped, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return fused_if_supported(kind, grouped, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(name: str, factors: Mapping[str, float]) -> float:
    """The factor of the longest prefix of ``name`` in ``factors`` (1 when none matches)."""
    matches = [prefix for prefix in factors if name.startswith(prefix)]
    return factors[max(matches, key=len)] if matches else 1.0


def covering_prefixes(module: nn.Module, chosen: Collection[str]) -> List[str]:
    """The fewest name prefixes (``"body."``, ``"seg_head.final.weight"``) that match exactly the parameters of
    ``module`` named in ``chosen`` (for :attr:`RunConfig.lr_factors`)."""

    def walk(prefix: str, child: nn.Module) -> List[str]:
        names = [prefix + name for name, _ in child.named_parameters()]
        if not names or not any(name in chosen for name in names):
            return []
        if all(name in chosen for name in names):
            return [prefix]
        found = [prefix + name for name, _ in child.named_parameters(recurse=False) if prefix + name in chosen]
        for name, grandchild in child.named_children():
            found += walk(f"{prefix}{name}.", grandchild)
        return found

    return walk("", module)


def fused_if_supported(kind: Type[torch.optim.Optimizer], params: List[Any], **hyper: float) -> torch.optim.Optimizer:
    """``kind(params, fused=True, **hyper)`` where this PyTorch has a fused kernel for the parameters'
    device, else the default implementation.

    On the CPU PyTorch otherwise picks the per-parameter loop, several times slower for models of hundreds
    of small tensors (docs/training.md, "The engine").
    Older releases (fused Adam on the CPU came with 2.4) refuse ``fused`` at construction.
    """
    try:
        return kind(params, fused=True, **hyper)
    except (RuntimeError, TypeError, ValueError):
        return kind(params, **hyper)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: RunConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
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
