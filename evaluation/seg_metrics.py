"""Semantic segmentation metrics: a streaming confusion matrix and mean IoU, Cityscapes-exact.

IoU follows ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``: a pixel whose label is
``ignore_index`` counts nowhere; a labelled pixel predicted as something outside the evaluated
classes (e.g. 255) is a false negative of its class and a false positive of none; classes with no
labelled and no predicted pixels get IoU NaN and are left out of the mean.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


class ConfusionMatrix:
    """Accumulates a (C, C+1) confusion matrix over batches, on the tensors' device.

    Row = label class, column = predicted class; the last column counts predictions outside
    ``[0, C)``.

    Args:
        num_classes: C (Cityscapes train ids: 19).
        ignore_index: label value that is not evaluated.
        device: where the matrix lives; default the device of the first batch.
    """

    def __init__(
        self, num_classes: int = 19, ignore_index: int = 255, device: Optional[Union[str, torch.device]] = None
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix: Optional[torch.Tensor] = None if device is None else self._zeros(torch.device(device))

    def _zeros(self, device: torch.device) -> torch.Tensor:
        return torch.zeros((self.num_classes, self.num_classes + 1), dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Forgets everything accumulated."""
        if self.matrix is not None:
            self.matrix.zero_()

    @torch.no_grad()
    def update(self, preds: ArrayLike, labels: ArrayLike) -> None:
        """Adds a batch.

        Args:
            preds: (..., H, W) integer class map, or (B, C, H, W) logits/scores when ``labels`` is
                (B, H, W) (argmax over C).
            labels: (..., H, W) integer labels, ``ignore_index`` where unlabelled.

        Raises:
            ValueError: shapes differ, or a label is neither a class nor ``ignore_index``.
        """
        labels = torch.as_tensor(labels)
        preds = torch.as_tensor(preds, device=labels.device)
        if preds.dim() == labels.dim() + 1 and preds.is_floating_point():
            preds = preds.argmax(dim=-3)
        if preds.shape != labels.shape:
            raise ValueError(f"prediction shape {tuple(preds.shape)} differs from label shape {tuple(labels.shape)}")
        if self.matrix is None:
            self.matrix = self._zeros(labels.device)
        labels = labels.to(self.matrix.device).reshape(-1).long()
        preds = preds.to(self.matrix.device).reshape(-1).long()
        c = self.num_classes
        valid = (labels >= 0) & (labels < c)
        if bool(((~valid) & (labels != self.ignore_index)).any()):
            # e.g. Cityscapes label ids passed where train ids belong: refuse rather than ignore.
            raise ValueError(f"labels hold values outside [0, {c}) other than ignore_index {self.ignore_index}")
        labels, preds = labels[valid], preds[valid]
        preds = torch.where((preds >= 0) & (preds < c), preds, torch.full_like(preds, c))
        counts = torch.bincount(labels * (c + 1) + preds, minlength=c * (c + 1))
        self.matrix += counts.view(c, c + 1)

    def compute(self) -> Dict[str, Union[float, List[float]]]:
        """Metrics of everything accumulated.

        Returns:
            ``{"mIoU": float, "per_class_iou": [C floats, NaN for absent classes],
            "pixel_accuracy": float}``; mIoU is NaN when no class occurs at all.
        """
        matrix = (self.matrix if self.matrix is not None else self._zeros(torch.device("cpu"))).cpu().double()
        square = matrix[:, : self.num_classes]
        tp = square.diagonal()
        fn = matrix.sum(dim=1) - tp
        fp = square.sum(dim=0) - tp
        denom = tp + fp + fn
        iou = torch.where(denom > 0, tp / denom.clamp(min=1), torch.full_like(tp, math.nan))
        present = ~torch.isnan(iou)
        labelled = matrix.sum()
        return {
            "mIoU": float(iou[present].mean()) if present.any() else math.nan,
            "per_class_iou": iou.tolist(),
            "pixel_accuracy": float(tp.sum() / labelled) if labelled > 0 else math.nan,
        }


def mean_iou(
    preds: ArrayLike, labels: ArrayLike, num_classes: int = 19, ignore_index: int = 255
) -> Dict[str, Union[float, List[float]]]:
    """Mean IoU, per-class IoU and pixel accuracy of one batch (see ``ConfusionMatrix``).

    Args:
        preds: (..., H, W) class map, or (B, C, H, W) logits with (B, H, W) labels.
        labels: (..., H, W) labels, ``ignore_index`` where unlabelled.
        num_classes: C.
        ignore_index: label value that is not evaluated.

    Returns:
        ``{"mIoU", "per_class_iou", "pixel_accuracy"}``.
    """
    matrix = ConfusionMatrix(num_classes, ignore_index)
    matrix.update(preds, labels)
    return matrix.compute()
