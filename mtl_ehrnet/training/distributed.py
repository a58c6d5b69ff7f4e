"""``torch.distributed`` set-up for runs launched by ``torchrun`` (gloo on CPU, NCCL on GPU), and the few
collectives the engine needs: agreeing on flags, averaging gradients that DDP does not cover, synchronised
batch norm, and running a step on every rank so that a failure on one rank surfaces on all instead of leaving
the others waiting."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable, List, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
# NCCL's default is 10 minutes: ranks waiting at a collective while rank 0 validates with a plain callable, or
# while a slower rank finishes its share of the teacher cache, would kill the job. An exception on one rank
# reaches the others through run_on_every_rank, not through this timeout.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among ``world`` processes and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and progress bars."""
        return self.rank == 0


class RankFailedError(RuntimeError):
    """Another rank raised during a step that every rank runs; this rank stops too."""


def setup(device: str = "auto", timeout: timedelta = TIMEOUT) -> Context:
    """Initialises the process group when ``torchrun`` set ``WORLD_SIZE`` > 1, and picks the device.

    Idempotent: a second call (the student trainer sets up before its cache build, then ``fit``) returns the
    same context and leaves the group as it is.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timeout)
    return Context(rank, world, local_rank, dev)


def all_min(values: torch.Tensor, context: Context) -> List[float]:
    """Each entry's minimum over the ranks, read to the host in one copy: the one point of a training step at
    which the host waits for the device.

    Args:
        values: (N,) float flags or values on this rank's device.
    """
    if context.world > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.MIN)
    return values.tolist()


def any_rank(flag: torch.Tensor, context: Context) -> torch.Tensor:
    """``flag``'s maximum over the ranks, left on the device (no read-back).

    Args:
        flag: 0-dim float on this rank's device (1 where this rank saw the event).
    """
    if context.world > 1:
        flag = flag.clone()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag


def sync_batchnorm(model: nn.Module, enabled: bool, context: Context) -> nn.Module:
    """``model`` with its batch norms converted in place to ``SyncBatchNorm`` when ``enabled`` and several
    processes train; otherwise ``model`` unchanged. SyncBatchNorm trains on CUDA only (see
    :func:`check_sync_batchnorm`)."""
    if not enabled or context.world == 1:
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def check_sync_batchnorm(enabled: bool, context: Context) -> None:
    """Refuses SyncBatchNorm where it would be used off CUDA: torch has no CPU kernels for it, and the first
    training step would fail deep inside the forward pass.

    Raises:
        ValueError: ``enabled`` with several processes on a device other than CUDA.
    """
    if enabled and context.world > 1 and context.device.type != "cuda":
        raise ValueError(f"sync_bn (--sync-bn) needs CUDA devices; this run trains on {context.device}")


def run_on_every_rank(compute: Callable[[], T], context: Context) -> List[T]:
    """Runs ``compute`` here and returns every rank's result, in rank order; every rank must call this.

    Raises:
        RankFailedError: on every rank whose ``compute`` succeeded, when another rank's raised (the failing
            rank re-raises its own exception), so no rank is left waiting at the next collective.
    """
    error: Optional[Exception] = None
    result: Any = None
    try:
        result = compute()
    except Exception as exc:  # noqa: BLE001 - re-raised below, after every rank has heard of it
        error = exc
    if context.world == 1:
        if error is not None:
            raise error
        return [result]
    outcomes: List[Any] = [None] * context.world
    message = None if error is None else f"{type(error).__name__}: {error}"
    dist.all_gather_object(outcomes, (message, None if error is not None else result))
    failed = [(rank, text) for rank, (text, _) in enumerate(outcomes) if text is not None]
    if error is not None:
        raise error
    if failed:
        raise RankFailedError("; ".join(f"rank {rank} failed: {text}" for rank, text in failed))
    return [value for _, value in outcomes]


def broadcast_parameters(parameters: Iterable[torch.Tensor], context: Context) -> None:
    """Copies rank 0's values of ``parameters`` to every rank (what DDP does for the model's at wrap time)."""
    if context.world == 1:
        return
    with torch.no_grad():
        for parameter in parameters:
            dist.broadcast(parameter.data, src=0)


def average_gradients(
    parameters: Sequence[torch.Tensor], context: Context, present: Optional[Sequence[bool]] = None
) -> None:
    """Replaces each gradient by its mean over ranks (for parameters outside DDP, e.g. a loss module's).

    A parameter without a gradient on some rank counts as a zero gradient there; one without a gradient on
    every rank keeps ``grad = None``, as in a single process.

    Args:
        present: whether each parameter has a gradient on any rank, when the caller already agreed on it (see
            :func:`absent_gradients`); None: agreed here, at the cost of reading a flag back from the device.
    """
    if context.world == 1 or not parameters:
        return
    if present is None:
        flags = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=context.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        present = [bool(v) for v in flags.tolist()]
    for parameter, anywhere in zip(parameters, present):
        if not anywhere:
            continue
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
        parameter.grad.div_(context.world)


def absent_gradients(parameters: Sequence[torch.Tensor], context: Context) -> List[torch.Tensor]:
    """One 0-dim flag per parameter, 1 where it has no gradient on this rank, made on the device without a
    copy from the host; their :func:`all_min` is 0 where any rank has a gradient. Empty in a single process."""
    if context.world == 1:
        return []
    return [torch.full((), float(p.grad is None), device=context.device) for p in parameters]


def parameters_in_sync(parameters: Iterable[torch.Tensor], context: Context) -> bool:
    """Whether every rank holds the same values of ``parameters`` (compares a checksum across ranks)."""
    if context.world == 1:
        return True
    checksum = torch.stack([p.detach().double().sum() for p in parameters]).sum().reshape(1).to(context.device)
    low, high = checksum.clone(), checksum.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
