"""Task-mixed batches: fixed shares, determinism, distributed sharding, one collate for both tasks."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mtl_ehrnet.data import (
    Cityscapes,
    CocoKeypoints,
    MixedTaskDataset,
    TaskMixBatchSampler,
    TrainTransform,
    collate_samples,
)
from mtl_ehrnet.data.mixed import split_batch


class _Range(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _mixed(a: int = 10, b: int = 4) -> MixedTaskDataset:
    return MixedTaskDataset([_Range(a), _Range(b)])


def test_split_batch():
    assert split_batch(8, (1, 1)) == [4, 4]
    assert split_batch(5, (3, 1)) == [4, 1]
    assert split_batch(4, (1, 0)) == [4, 0]
    with pytest.raises(ValueError, match="too small"):
        split_batch(2, (10, 1, 1))
    with pytest.raises(ValueError, match="positive sum"):
        split_batch(4, (0, 0))


def test_every_batch_has_the_chosen_share():
    dataset = _mixed()
    sampler = TaskMixBatchSampler(dataset, 6, (2, 1), seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3  # ceil(10 / 4) for task 0, ceil(4 / 2) for task 1
    for batch in batches:
        tasks = [dataset.task_of(i) for i in batch]
        assert tasks.count(0) == 4 and tasks.count(1) == 2
    first_task = [i for b in batches for i in b if dataset.task_of(i) == 0]
    assert len(set(first_task)) == 10  # the bigger task is seen once per epoch, no repeats


def test_deterministic_under_seed_and_epoch():
    dataset = _mixed()
    a = TaskMixBatchSampler(dataset, 4, (1, 1), seed=3)
    b = TaskMixBatchSampler(dataset, 4, (1, 1), seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)


def test_ranks_take_disjoint_batches():
    dataset = _mixed(40, 40)
    full = list(TaskMixBatchSampler(dataset, 4, (1, 1), seed=0, num_replicas=1, rank=0, num_batches=10))
    shards = [list(TaskMixBatchSampler(dataset, 4, (1, 1), seed=0, num_replicas=2, rank=r, num_batches=10))
              for r in range(2)]
    assert shards[0] == full[0::2] and shards[1] == full[1::2]
    with pytest.raises(ValueError, match="rank 2"):
        TaskMixBatchSampler(dataset, 4, (1, 1), num_replicas=2, rank=2)


def test_real_samples_collate_across_tasks(synth):
    transform = TrainTransform(32)
    dataset = MixedTaskDataset([
        CocoKeypoints(synth.coco_images("val"), synth.coco_annotations("val"), transform),
        Cityscapes(synth.cityscapes_root, "val", transform),
    ])
    loader = DataLoader(dataset, batch_sampler=TaskMixBatchSampler(dataset, 4, (1, 1), num_batches=1),
                        collate_fn=collate_samples)
    batch = next(iter(loader))
    assert batch["has_pose"].tolist() == [True, True, False, False]
    assert batch["has_seg"].tolist() == [False, False, True, True]
    assert batch["heatmaps"].shape == (4, 17, 16, 16) and batch["seg"].shape == (4, 32, 32)
    assert (batch["seg"][:2] == 255).all() and batch["masks"][2:].sum() == 0
    # A plain DistributedSampler over the same dataset works with the default collate as well.
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=0)
    batch = next(iter(DataLoader(dataset, batch_size=len(dataset), sampler=sampler)))
    assert batch["image"].shape[0] == len(sampler)


def test_collate_names_the_mismatching_key():
    a = {"image": torch.zeros(3, 8, 8), "seg": torch.zeros(8, 8)}
    b = {"image": torch.zeros(3, 16, 16), "seg": torch.zeros(16, 16)}
    with pytest.raises(ValueError, match="shape of 'image'"):
        collate_samples([a, b])
    with pytest.raises(ValueError, match="different keys"):
        collate_samples([a, {"image": torch.zeros(3, 8, 8)}])


def test_a_zero_ratio_task_may_be_empty():
    dataset = MixedTaskDataset([_Range(5), _Range(0)])
    batches = list(TaskMixBatchSampler(dataset, 2, (1, 0), seed=0))
    assert {i for b in batches for i in b} == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError, match="empty dataset"):
        TaskMixBatchSampler(dataset, 2, (1, 1))
