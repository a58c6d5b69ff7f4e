"""Per-epoch validation under ``torchrun``: every rank evaluates its share of the images, rank 0 combines them.

A validator is either a plain callable ``model -> {metric: value}``, which only rank 0 runs while the others
wait, or a :class:`ShardedValidator`, whose ``shard`` every rank runs on its part of the set and whose
``reduce`` turns the gathered parts into the metrics a single process would compute. Either way an exception
on one rank surfaces on every rank (:func:`mtl_ehrnet.training.distributed.run_on_every_rank`), and every rank
returns the same metrics.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Protocol, Sequence, Union, runtime_checkable

from torch import nn

from mtl_ehrnet.training.distributed import Context, run_on_every_rank


@runtime_checkable
class ShardedValidator(Protocol):
    """Validation split over ranks.

    ``shard(model, rank, world)`` evaluates this rank's part of the set and returns a picklable partial result
    (predictions, a confusion matrix...); ``reduce(parts)`` takes every rank's part, in rank order, and returns
    the metrics of the whole set. ``__call__(model)`` is the single-process validation,
    ``reduce([shard(model, 0, 1)])``.
    """

    def __call__(self, model: nn.Module) -> Dict[str, float]: ...

    def shard(self, model: nn.Module, rank: int, world: int) -> Any: ...

    def reduce(self, parts: Sequence[Any]) -> Dict[str, float]: ...


Validator = Union[ShardedValidator, Callable[[nn.Module], Dict[str, Any]]]


def shard_batches(count: int, batch_size: int, rank: int, world: int) -> List[range]:
    """The index ranges of ``rank``'s batches: batches ``rank, rank + world, ...`` of ``range(count)`` cut into
    ``batch_size`` pieces. Every image sits in the batch it would have in one process, so a network that
    batches differently on each rank cannot change the result by a rounding."""
    starts = range(0, count, batch_size)
    return [range(start, min(start + batch_size, count)) for start in starts[rank::world]]


def validate_on_ranks(validate: Validator, model: nn.Module, context: Context) -> Dict[str, float]:
    """Runs ``validate`` on ``model`` (already in eval mode) across the ranks of ``context``; every rank must
    call this and gets the same metrics back.

    Raises:
        RankFailedError: on the other ranks when one rank's part raised (that rank raises its own error).
    """
    if isinstance(validate, ShardedValidator):
        parts = run_on_every_rank(lambda: validate.shard(model, context.rank, context.world), context)
        main = lambda: validate.reduce(parts)  # noqa: E731
    else:
        main = lambda: validate(model)  # noqa: E731
    return run_on_every_rank(lambda: {k: float(v) for k, v in main().items()} if context.is_main else None, context)[0]
