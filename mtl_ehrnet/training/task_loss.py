"""The ground-truth training loss of a pose, segmentation or multi-task model: a named, weighted sum."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import torch
from torch import nn

from mtl_ehrnet.training.class_weights import cityscapes_class_weights
from mtl_ehrnet.training.pose_loss import PUSH_KINDS, associative_embedding, heatmap_mse
from mtl_ehrnet.training.seg_loss import segmentation_ce

CLASS_WEIGHTS = ("none", "median")


@dataclass(frozen=True)
class GroundTruthWeights:
    """Weights of the ground-truth terms (HigherHRNet: heatmaps 1 at both resolutions, pull/push 1e-3)."""

    heatmaps: float = 1.0
    heatmaps_lr: float = 1.0
    pull: float = 1e-3
    push: float = 1e-3
    seg: float = 1.0


def labelled_mean(per_image: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Mean of (B,) per-image losses over the images whose ``labelled`` flag is set; 0 when none is."""
    weights = labelled.to(per_image.dtype)
    return (per_image * weights).sum() / weights.sum().clamp(min=1)


class GroundTruthLoss(nn.Module):
    """Loss terms against labels for the heads of ``tasks``.

    Each image contributes to the terms of the tasks it has labels for (``has_pose`` / ``has_seg``), so
    the same loss serves single-task teachers and task-mixed student batches.

    Args:
        tasks: ``("pose",)``, ``("seg",)`` or both.
        weights: per-term weights.
        ohem_threshold: enables OHEM cross-entropy for segmentation.
        class_weights: (C,) segmentation class weights (see :mod:`mtl_ehrnet.training.class_weights`).
        push_kind: the associative-embedding push, ``"exp"`` or ``"max"`` (see
            :func:`mtl_ehrnet.training.pose_loss.associative_embedding`).

    Returns (forward): dict of weighted scalar terms named ``"pose/heatmaps"``, ``"pose/heatmaps_lr"``,
        ``"pose/pull"``, ``"pose/push"``, ``"seg/ce"``; the training loss is their sum.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        weights: GroundTruthWeights = GroundTruthWeights(),
        ohem_threshold: Optional[float] = None,
        class_weights: Optional[torch.Tensor] = None,
        push_kind: str = "exp",
    ) -> None:
        super().__init__()
        if push_kind not in PUSH_KINDS:
            raise ValueError(
                f"the associative-embedding push (--ae-push) must be one of {PUSH_KINDS}, got {push_kind!r}"
            )
        self.tasks = tuple(tasks)
        self.push_kind = push_kind
        self.weights = weights
        self.ohem_threshold = ohem_threshold
        self.class_weights: Optional[torch.Tensor]
        self.register_buffer(
            "class_weights",
            None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32),
            persistent=False,
        )

    def forward(self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        terms: Dict[str, torch.Tensor] = {}
        w = self.weights
        if "pose" in self.tasks:
            has = batch["has_pose"]
            hm = heatmap_mse(outputs["heatmaps"].float(), batch["heatmaps"], batch["masks"])
            hm_lr = heatmap_mse(outputs["heatmaps_lr"].float(), batch["heatmaps_lr"], batch["masks_lr"])
            pull, push = associative_embedding(outputs["tags"].float(), batch["joints"], self.push_kind)
            terms["pose/heatmaps"] = w.heatmaps * labelled_mean(hm, has)
            terms["pose/heatmaps_lr"] = w.heatmaps_lr * labelled_mean(hm_lr, has)
            terms["pose/pull"] = w.pull * labelled_mean(pull, has)
            terms["pose/push"] = w.push * labelled_mean(push, has)
        if "seg" in self.tasks:
            # Images without seg labels carry all-255 labels and add nothing to the mean.
            terms["seg/ce"] = w.seg * segmentation_ce(
                outputs["seg"].float(), batch["seg"], self.ohem_threshold, class_weights=self.class_weights
            )
        return terms


def ground_truth_loss(
    tasks: Sequence[str],
    *,
    ae_weight: float = 1e-3,
    ae_push: str = "exp",
    class_weights: str = "none",
    ohem: Optional[float] = None,
    cityscapes: Optional[Union[str, Path]] = None,
) -> GroundTruthLoss:
    """The :class:`GroundTruthLoss` that ``train-teacher`` and ``distill`` build from their flags.

    Args:
        tasks: ``("pose",)``, ``("seg",)`` or both.
        ae_weight: weight of the associative-embedding pull and push terms (HigherHRNet's 1e-3).
        ae_push: the push term, ``"exp"`` (HigherHRNet's COCO setting) or ``"max"``.
        class_weights: ``"none"`` or ``"median"`` (median-frequency balancing over the training labels of
            ``cityscapes``).
        ohem: segmentation OHEM threshold (HRNet: 0.7), or None for plain cross-entropy.
        cityscapes: Cityscapes root whose ``train`` labels give the ``"median"`` class weights.
    """
    if class_weights not in CLASS_WEIGHTS:
        raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, got {class_weights!r}")
    weights = None
    if class_weights == "median" and "seg" in tasks:
        if cityscapes is None:
            raise ValueError("median class weights are counted over a Cityscapes train split: give its root")
        weights = cityscapes_class_weights(cityscapes)
    return GroundTruthLoss(
        tasks,
        GroundTruthWeights(pull=ae_weight, push=ae_weight),
        ohem_threshold=ohem,
        class_weights=weights,
        push_kind=ae_push,
    )
