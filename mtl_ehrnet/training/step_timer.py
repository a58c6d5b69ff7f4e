"""How long one training step takes: the figure that turns a time budget into a number of steps."""
from __future__ import annotations

import copy
import statistics
import time
from typing import Callable, Dict, Iterator, Mapping, Tuple, Union

import torch
from torch import nn

from mtl_ehrnet.training.optim import fused_if_supported

LossFn = Callable[[Dict[str, torch.Tensor], Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]
Batches = Union[Dict[str, torch.Tensor], Iterator[Dict[str, torch.Tensor]]]


def seconds_per_step(model: nn.Module, loss_fn: LossFn, batch: Batches, *,
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
    return seconds_per_step_each(
        {"model": (model, loss_fn, batch)}, steps=steps, warmup=warmup, channels_last=channels_last
    )["model"]


def seconds_per_step_each(
    jobs: Mapping[str, Tuple[nn.Module, LossFn, Batches]],
    *,
    steps: int = 5,
    warmup: int = 1,
    channels_last: bool = True,
) -> Dict[str, float]:
    """:func:`seconds_per_step` of several models, timed in rounds of one step each.

    Timing one model after the other lets a burst of load from another process land on one model alone. In
    rounds, a passing load touches one step of every model, and each model's median drops it. With several
    models each round first runs one untimed step per model: the other models' steps evict its oneDNN
    primitives and caches, so a lone step would run slower than training's consecutive steps.

    Args:
        jobs: name -> (model, loss function, batch or iterator of batches), as for :func:`seconds_per_step`.
        steps, warmup, channels_last: as for :func:`seconds_per_step`, per model.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps}, {warmup}")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    steppers = {name: _Stepper(model, loss_fn, batches, fmt) for name, (model, loss_fn, batches) in jobs.items()}
    times: Dict[str, list] = {name: [] for name in steppers}
    rewarm = len(steppers) > 1
    for round_ in range(warmup + steps):
        for name, stepper in steppers.items():
            if rewarm and round_ >= warmup:
                stepper.step()
            seconds = stepper.step()
            if round_ >= warmup:
                times[name].append(seconds)
    return {name: statistics.median_low(values) for name, values in times.items()}


class _Stepper:
    """A deep copy of a model with its own Adam, made as ``build_optimizer`` makes it, that times one step."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: Batches, memory_format: torch.memory_format) -> None:
        self.net = copy.deepcopy(model).train().to(memory_format=memory_format)
        self.optimizer = fused_if_supported(torch.optim.Adam, list(self.net.parameters()), lr=1e-6)
        self.loss_fn, self.batches, self.memory_format = loss_fn, batches, memory_format

    def step(self) -> float:
        started = time.perf_counter()
        batch = self.batches if isinstance(self.batches, dict) else next(self.batches)
        images = batch["image"].contiguous(memory_format=self.memory_format)
        loss = torch.stack([t.float() for t in self.loss_fn(self.net(images), batch).values()]).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - started
