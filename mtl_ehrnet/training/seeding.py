"""Reproducible data order and augmentation, so a resumed run equals an uninterrupted one.

The sample order of epoch e is a permutation seeded by ``(seed, e)``, and the augmentation of sample i
in epoch e is drawn from RNGs seeded by ``(seed, e, i)``, whatever worker loads it. A run resumed at
step k of epoch e therefore sees exactly the batches it would have seen.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Dict, Iterator, List, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededDataset(Dataset):
    """Wraps a dataset so that item i of epoch e always gets the same random augmentation.

    The global Python, NumPy and torch RNGs are seeded per item and restored afterwards, so loading in
    the main process does not disturb the training RNG. An item is asked for by ``index`` (in the epoch of
    :meth:`set_epoch`) or by ``(epoch, index)``, as :class:`EpochBatches` asks: persistent DataLoader
    workers hold copies of this dataset that a ``set_epoch`` in the main process never reaches.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Any:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        seed = _sample_seed(self.seed, epoch, index)
        try:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            return self.dataset[index]
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])


class EpochBatchSampler(Sampler[List[int]]):
    """Batches of a seeded per-epoch permutation, sharded over ranks, resumable mid-epoch.

    Every rank draws the same permutation; rank r takes batches r, r + R, ... (incomplete last batches
    dropped). ``skip`` batches of this rank are left out at the start, for resuming.
    """

    def __init__(self, size: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                 shuffle: bool = True, skip: int = 0, max_batches: "int | None" = None) -> None:
        if size < batch_size * world:
            raise ValueError(f"dataset of {size} samples is smaller than one batch ({batch_size} x {world} processes)")
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, epoch
        self.rank, self.world, self.shuffle, self.skip, self.max_batches = rank, world, shuffle, skip, max_batches

    def batches_per_epoch(self) -> int:
        count = self.size // (self.batch_size * self.world)
        return count if self.max_batches is None else min(count, self.max_batches)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.skip)

    def __iter__(self) -> Iterator[List[int]]:
        if self.shuffle:
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            ).tolist()
        else:
            order = list(range(self.size))
        for b in range(self.skip, self.batches_per_epoch()):
            start = (b * self.world + self.rank) * self.batch_size
            yield order[start : start + self.batch_size]


class EpochBatches(Sampler[List[Tuple[int, int]]]):
    """The batches of the current epoch as ``(epoch, index)`` keys of a :class:`SeededDataset`, for one
    DataLoader that lives through every epoch (persistent workers).

    Args:
        batches_of: ``(epoch, skip) -> batch sampler`` of that epoch, without its first ``skip`` batches.
    """

    def __init__(self, batches_of: Callable[[int, int], Sampler[List[int]]]) -> None:
        self.batches_of = batches_of
        self.set_epoch(0)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Serves ``epoch`` from batch ``skip`` on, from the next ``iter(loader)``."""
        self.epoch, self.batches = epoch, self.batches_of(epoch, skip)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        epoch = self.epoch
        for batch in self.batches:
            yield [(epoch, index) for index in batch]


def rng_state() -> Dict[str, Any]:
    """The training process's RNG states as plain data (readable with ``weights_only=True``).

    Of the CUDA generators only the current device's is saved (``"cuda"``: one state tensor): a process
    trains on one device, and a run resumed on a machine that shows fewer GPUs must not need the others.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restores :func:`rng_state`'s states. The CUDA state goes to the current device; a list of per-device
    states (checkpoints of earlier versions) restores the devices this process sees, and no others."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        return
    if isinstance(cuda, torch.Tensor):
        torch.cuda.set_rng_state(cuda, torch.cuda.current_device())
        return
    for device, device_state in enumerate(list(cuda)[: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(device_state, device)
