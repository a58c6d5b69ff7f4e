"""Throughput of the training data pipeline (decode, augmentation, targets, collate) on the CPU."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Optional, Union

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mtl_ehrnet.data.cityscapes import Cityscapes
from mtl_ehrnet.data.coco import CocoKeypoints
from mtl_ehrnet.data.mixed import MixedTaskDataset, TaskMixBatchSampler, collate_samples
from mtl_ehrnet.data.synthetic import SyntheticLayout, generate_synthetic
from mtl_ehrnet.data.transforms import TrainTransform


def benchmark_pipeline(
    data: Optional[Union[str, Path]] = None,
    *,
    input_size: int = 512,
    workers: int = 2,
    batch_size: int = 8,
    batches: int = 30,
    warmup: int = 3,
    seed: int = 0,
) -> float:
    """Measures samples per second of a task-mixed (1:1) training loader.

    Args:
        data: a synthetic dataset root (``mtl-ehrnet synth``); default: 64 images generated into a
            temporary directory at 640x480, COCO's typical size.
        input_size: training input size S.
        workers: DataLoader worker processes.
        batch_size: samples per batch.
        batches: timed batches.
        warmup: batches run before timing (worker start-up, first file reads).
        seed: loader seed.

    Returns:
        Samples per second over the timed batches.
    """
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(data) if data else generate_synthetic(Path(scratch) / "synth", 64, seed, (640, 480)).root
        layout = SyntheticLayout(root)
        transform = TrainTransform(input_size)
        dataset = MixedTaskDataset([
            CocoKeypoints(layout.coco_images("train"), layout.coco_annotations("train"), transform),
            Cityscapes(layout.cityscapes_root, "train", transform),
        ])
        sampler = TaskMixBatchSampler(dataset, batch_size, (1, 1), num_batches=warmup + batches, seed=seed)
        torch.manual_seed(seed)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_samples,
                            persistent_workers=False)
        iterator = iter(loader)
        for _ in range(warmup):
            next(iterator)
        start = time.perf_counter()
        count = 0
        for batch in tqdm(iterator, total=batches, desc="data-benchmark", unit="batch"):
            count += batch["image"].shape[0]
        return count / (time.perf_counter() - start)
