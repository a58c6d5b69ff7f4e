"""Samples per second that one DataLoader worker produces, per dataset and input size, and the workers a
GPU needs to keep up with a target step rate.

A worker runs one thread and does, per sample, the decode, the augmentation and the targets, then the
collate of its batch; this measures exactly that in the calling process, on synthetic sets written in
the real formats at the real frame sizes (COCO-like 640x480, Cityscapes-like 2048x1024) and cached, so
a second run does not generate them again.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from mtl_ehrnet.data.cityscapes import Cityscapes
from mtl_ehrnet.data.coco import CocoKeypoints
from mtl_ehrnet.data.mixed import collate_samples
from mtl_ehrnet.data.synthetic import SyntheticLayout, generate_synthetic
from mtl_ehrnet.data.transforms import TrainTransform

PathLike = Union[str, Path]
COCO_FRAME = (640, 480)  # (W, H): COCO's typical image
CITYSCAPES_FRAME = (2048, 1024)  # (W, H): every Cityscapes frame
# The thesis's training inputs: 512 x 512 for both tasks, and 512 x 1024 crops for Cityscapes.
ROWS: Tuple[Tuple[str, Tuple[int, int]], ...] = (
    ("coco", (512, 512)), ("cityscapes", (512, 512)), ("cityscapes", (512, 1024)),
)
_COMPLETE = ".complete"


@dataclass(frozen=True)
class WorkerRate:
    """One row of the table.

    Attributes:
        dataset: ``coco`` or ``cityscapes``.
        frame: source image (W, H).
        input_hw: network input (H, W).
        samples_per_second: one worker's rate.
    """

    dataset: str
    frame: Tuple[int, int]
    input_hw: Tuple[int, int]
    samples_per_second: float

    @property
    def ms_per_sample(self) -> float:
        return 1000.0 / self.samples_per_second


def workers_needed(samples_per_second: float, steps_per_second: float, batch_size: int) -> int:
    """Workers per GPU that deliver ``steps_per_second`` batches of ``batch_size``: ceil(R * B / rate)."""
    if samples_per_second <= 0:
        raise ValueError(f"a worker rate must be positive, got {samples_per_second}")
    return math.ceil(steps_per_second * batch_size / samples_per_second)


def cached_synthetic(cache: PathLike, frame: Tuple[int, int], images: int, seed: int = 0) -> SyntheticLayout:
    """A synthetic set of ``images`` frames of ``frame`` (W, H) under ``cache``, generated on first use."""
    root = Path(cache) / f"synth-{frame[0]}x{frame[1]}-{images}img-seed{seed}"
    if not (root / _COMPLETE).is_file():
        generate_synthetic(root, images, seed, frame, progress=True)
        (root / _COMPLETE).touch()
    return SyntheticLayout(root)


def training_set(layout: SyntheticLayout, dataset: str, input_hw: Tuple[int, int]) -> Dataset:
    """The train split of ``dataset`` under ``layout`` with the training augmentation at ``input_hw``."""
    transform = TrainTransform(input_hw)
    if dataset == "coco":
        return CocoKeypoints(layout.coco_images("train"), layout.coco_annotations("train"), transform, skip_empty=True)
    if dataset == "cityscapes":
        return Cityscapes(layout.cityscapes_root, "train", transform)
    raise ValueError(f"unknown dataset '{dataset}' (coco or cityscapes)")


def _cycle(count: int) -> Iterator[int]:
    while True:
        yield from range(count)


def worker_rate(dataset: Dataset, samples: int, batch_size: int, warmup: int = 2) -> float:
    """Samples per second of one thread building samples and collating them in batches of ``batch_size``."""
    if samples < 1 or batch_size < 1:
        raise ValueError(f"samples and batch_size must be at least 1, got {samples} and {batch_size}")
    indices = _cycle(len(dataset))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker runs with
    try:
        for _ in range(warmup):
            dataset[next(indices)]
        done, start = 0, time.perf_counter()
        while done < samples:
            batch = [dataset[next(indices)] for _ in range(min(batch_size, samples - done))]
            collate_samples(batch)
            done += len(batch)
        return done / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def measure_worker_rates(
    cache: PathLike,
    *,
    images: int = 16,
    samples: int = 32,
    batch_size: int = 8,
    frames: Sequence[Tuple[int, int]] = (COCO_FRAME, CITYSCAPES_FRAME),
    seed: int = 0,
) -> List[WorkerRate]:
    """One :class:`WorkerRate` per row of :data:`ROWS`.

    Args:
        cache: where the synthetic sets are generated once and kept.
        images: images per generated set.
        samples: timed samples per row.
        batch_size: samples per collated batch.
        frames: (W, H) of the COCO-like and of the Cityscapes-like frames.
        seed: dataset and augmentation seed.
    """
    layouts = {"coco": cached_synthetic(cache, tuple(frames[0]), images, seed),
               "cityscapes": cached_synthetic(cache, tuple(frames[1]), images, seed)}
    frame_of = {"coco": tuple(frames[0]), "cityscapes": tuple(frames[1])}
    rows = []
    for dataset, input_hw in ROWS:
        torch.manual_seed(seed)
        rate = worker_rate(training_set(layouts[dataset], dataset, input_hw), samples, batch_size)
        rows.append(WorkerRate(dataset, frame_of[dataset], input_hw, rate))
    return rows


def format_rate_table(rows: Sequence[WorkerRate], steps_per_second: float = 0.0, batch_size: int = 8) -> str:
    """The rows as an aligned text table; with ``steps_per_second`` > 0, a column of workers per GPU."""
    header = ["dataset", "frame WxH", "input WxH", "samples/s/worker", "ms/sample"]
    if steps_per_second > 0:
        header.append(f"workers/GPU ({steps_per_second:g} steps/s x batch {batch_size})")
    lines = [header]
    for row in rows:
        cells = [row.dataset, f"{row.frame[0]}x{row.frame[1]}", f"{row.input_hw[1]}x{row.input_hw[0]}",
                 f"{row.samples_per_second:.1f}", f"{row.ms_per_sample:.1f}"]
        if steps_per_second > 0:
            cells.append(str(workers_needed(row.samples_per_second, steps_per_second, batch_size)))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)
