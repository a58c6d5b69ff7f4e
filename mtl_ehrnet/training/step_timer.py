"""How long one training step takes: the figure that turns a time budget into a number of steps."""
from __future__ import annotations

import copy
import time
from typing import Callable, Dict, Iterator, Union

import torch
from torch import nn

from mtl_ehrnet.training.optim import fused_if_supported

LossFn = Callable[[Dict[str, torch.Tensor], Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]


def seconds_per_step(model: nn.Module, loss_fn: LossFn, batch: Union[Dict[str, torch.Tensor], Iterator[Dict[str, torch.Tensor]]], *,
                     steps: int = 3, warmup: int = 1, channels_last: bool = True) -> float:
    """Median wall time of a forward + backward + Adam step on ``batch`` (a collated training batch), or on
    the next batch of an iterator (a DataLoader's), whose loading is then timed with the step.

    The model is deep-copied, so its weights and the caller's RNG-driven state are left untouched.

    Args:
        model: the network to time (CPU or wherever its parameters are).
        loss_fn: ``(outputs, batch) -> {name: term}``.
        batch: dict of (B, ...) tensors with at least ``"image"`` (B, 3, H, W), or an iterator of them.
        steps: timed steps; warmup: untimed steps before them (allocator, oneDNN primitive caches).
        channels_last: NHWC as the engine uses by default.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps}, {warmup}")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = copy.deepcopy(model).train().to(memory_format=fmt)
    optimizer = fused_if_supported(torch.optim.Adam, list(net.parameters()), lr=1e-6)  # as build_optimizer makes it
    fixed = batch if isinstance(batch, dict) else None
    times = []
    for i in range(warmup + steps):
        started = time.perf_counter()
        current = fixed if fixed is not None else next(batch)  # type: ignore[arg-type]
        images = current["image"].contiguous(memory_format=fmt)
        loss = torch.stack([t.float() for t in loss_fn(net(images), current).values()]).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]
