"""Class weights for segmentation cross-entropy from the training labels' class frequencies.

Median-frequency balancing (Eigen & Fergus, 2015): ``w_c = median_f / f_c``, where ``f_c`` is class
``c``'s share of the labelled pixels. Rare, thin classes (poles, signs) otherwise take many epochs to
leave zero IoU; the weights are clipped so that a handful of pixels cannot dominate the loss.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Union

import numpy as np
import torch

from mtl_ehrnet.data.cityscapes import list_cityscapes_pairs, read_train_ids

PathLike = Union[str, Path]


def count_train_ids(label_files: Iterable[PathLike], num_classes: int = 19) -> np.ndarray:
    """Pixel count of every train id over ``*_labelIds.png`` files (255 = ignore is not counted).

    Returns:
        int64 (num_classes,).
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for path in label_files:
        ids = read_train_ids(path)
        counts += np.bincount(ids[ids < num_classes].ravel(), minlength=num_classes)[:num_classes]
    return counts


def median_frequency_weights(counts: np.ndarray, max_weight: float = 10.0) -> torch.Tensor:
    """``median(f) / f_c`` over the classes that occur, clipped to ``[1 / max_weight, max_weight]``;
    classes that never occur get weight 1 (they never appear as a target).

    Args:
        counts: (C,) pixel counts per class.
        max_weight: clip bound.

    Returns:
        float32 (C,).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise ValueError("no labelled pixel in the training labels: cannot compute class weights")
    freq = counts / counts.sum()
    weights = np.ones_like(freq)
    weights[present] = np.clip(np.median(freq[present]) / freq[present], 1.0 / max_weight, max_weight)
    return torch.as_tensor(weights, dtype=torch.float32)


def cityscapes_class_weights(
    root: PathLike, split: str = "train", num_classes: int = 19, max_weight: float = 10.0
) -> torch.Tensor:
    """Median-frequency weights of a Cityscapes split's labels; (num_classes,) float32."""
    labels = [label for _, label in list_cityscapes_pairs(root, split)]
    return median_frequency_weights(count_train_ids(labels, num_classes), max_weight)
