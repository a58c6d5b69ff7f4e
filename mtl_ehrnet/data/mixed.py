"""Task-mixed batches: pose-only and segmentation-only datasets in one loader (DESIGN.md section 6).

Every sample says which labels it has (``has_pose``, ``has_seg``) and carries placeholder targets for
the others, so one collate stacks both kinds. :class:`TaskMixBatchSampler` fixes how many samples of
each task go into every batch; it is deterministic under ``seed`` and ``set_epoch`` and shards
batches over distributed ranks itself. :class:`MixedTaskDataset` is also a plain map-style dataset, so
``DistributedSampler`` works on it too (mixing then follows the dataset sizes).
"""
from __future__ import annotations

import math
from typing import Dict, Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import ConcatDataset, Dataset, Sampler, default_collate


class MixedTaskDataset(ConcatDataset):
    """Single-task datasets side by side; index ``i`` belongs to task ``task_of(i)``.

    Args:
        datasets: one dataset per task, e.g. ``[CocoKeypoints(...), Cityscapes(...)]``.
    """

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        if not datasets:
            raise ValueError("MixedTaskDataset needs at least one dataset")
        super().__init__(list(datasets))

    @property
    def sizes(self) -> List[int]:
        """Number of samples of each task."""
        return [len(d) for d in self.datasets]

    @property
    def offsets(self) -> List[int]:
        """Index of each task's first sample."""
        return [0] + self.cumulative_sizes[:-1]

    def task_of(self, index: int) -> int:
        """The task (position in ``datasets``) of a global index."""
        for task, end in enumerate(self.cumulative_sizes):
            if index < end:
                return task
        raise IndexError(f"index {index} out of range for {len(self)} samples")


def split_batch(batch_size: int, ratios: Sequence[float]) -> List[int]:
    """Samples of each task per batch: ``batch_size * ratio`` rounded by largest remainder.

    Raises:
        ValueError: negative ratios, all-zero ratios, or a batch too small to hold every task with a
            positive ratio.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"task ratios {list(ratios)} must be >= 0 with a positive sum")
    shares = [batch_size * r / sum(ratios) for r in ratios]
    counts = [int(math.floor(s)) for s in shares]
    for task in sorted(range(len(shares)), key=lambda t: counts[t] - shares[t])[: batch_size - sum(counts)]:
        counts[task] += 1
    starved = [t for t, (r, c) in enumerate(zip(ratios, counts)) if r > 0 and c == 0]
    if starved:
        raise ValueError(f"batch_size {batch_size} is too small for ratios {list(ratios)}: tasks {starved} "
                         "would never be drawn")
    return counts


class TaskMixBatchSampler(Sampler[List[int]]):
    """Batches of global indices into a :class:`MixedTaskDataset` with a fixed share per task.

    Each task's samples are drawn from a seeded permutation, reshuffled every epoch and recycled when
    the task runs out, so the smaller dataset is oversampled. Batches are generated identically on
    every rank and rank ``r`` takes batches ``r, r + R, ...``.

    Args:
        dataset: the mixed dataset.
        batch_size: samples per batch (per rank).
        ratios: relative share of each task, e.g. ``(1, 1)``.
        num_batches: batches per epoch over all ranks; default: enough for every sample of the task
            that needs most batches to appear once.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        num_replicas: ranks; default: the distributed world size, or 1.
        rank: this rank; default: the distributed rank, or 0.
    """

    def __init__(
        self,
        dataset: MixedTaskDataset,
        batch_size: int,
        ratios: Sequence[float],
        *,
        num_batches: Optional[int] = None,
        seed: int = 0,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
    ) -> None:
        if len(ratios) != len(dataset.sizes):
            raise ValueError(f"{len(ratios)} ratios for {len(dataset.sizes)} tasks")
        self.counts = split_batch(batch_size, ratios)
        empty = [t for t, (n, c) in enumerate(zip(dataset.sizes, self.counts)) if c and n == 0]
        if empty:
            raise ValueError(f"tasks {empty} have a positive ratio but an empty dataset")
        distributed = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas or (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, {self.num_replicas})")
        self.sizes, self.offsets = dataset.sizes, dataset.offsets
        if num_batches is None:
            num_batches = max(math.ceil(n / c) for n, c in zip(self.sizes, self.counts) if c)
        self.batches_per_rank = math.ceil(num_batches / self.num_replicas)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffles for ``epoch`` (call before each epoch, as with ``DistributedSampler``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_rank

    def __iter__(self) -> Iterator[List[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.batches_per_rank * self.num_replicas
        streams = []
        for size, count in zip(self.sizes, self.counts):
            need = total * count
            if not need:
                streams.append(torch.zeros(0, dtype=torch.int64))
                continue
            perms = [torch.randperm(size, generator=generator) for _ in range(math.ceil(need / size))]
            streams.append(torch.cat(perms)[:need])
        for batch in range(self.rank, total, self.num_replicas):
            indices: List[int] = []
            for stream, count, offset in zip(streams, self.counts, self.offsets):
                indices += (stream[batch * count:(batch + 1) * count] + offset).tolist()
            yield indices


def collate_samples(samples: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Stacks sample dicts; a clear error when they do not share keys and shapes.

    Returns:
        The batch dict, every tensor with a leading batch dimension.

    Raises:
        ValueError: naming the key whose shapes differ (e.g. samples built at different input sizes).
    """
    keys = set(samples[0])
    for sample in samples[1:]:
        if set(sample) != keys:
            raise ValueError(f"samples have different keys: {sorted(keys ^ set(sample))}")
    for key in samples[0]:
        shapes = {tuple(s[key].shape) for s in samples}
        if len(shapes) > 1:
            raise ValueError(f"samples disagree on the shape of '{key}': {sorted(shapes)}")
    return default_collate(samples)
