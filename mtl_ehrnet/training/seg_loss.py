"""Segmentation ground-truth loss: cross-entropy with ignore 255, optionally online hard example mining."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def upsample_logits(logits: torch.Tensor, size: "torch.Size | tuple") -> torch.Tensor:
    """Bilinearly resizes (B, C, h, w) logits to the label size (H, W)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def segmentation_ce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ohem_threshold: Optional[float] = None,
    ohem_min_kept: int = 100_000,
    class_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels (logits upsampled to the label size).

    Args:
        logits: (B, C, h, w) at stride 4.
        labels: (B, H, W) int64 train ids, 255 = ignore.
        ohem_threshold: if set, only pixels whose true-class probability is below it count, but never
            fewer than ``ohem_min_kept`` hardest pixels (HRNet's OHEM cross-entropy).
        class_weights: (C,) per-class weights; the loss is then the weighted mean over pixels.
    Returns:
        Scalar; 0 (with a gradient path) when no pixel is labelled.
    """
    logits = upsample_logits(logits, labels.shape[-2:])
    pixel = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")  # (B, H, W)
    valid = labels != IGNORE_INDEX
    if not valid.any():
        return logits.sum() * 0.0
    losses = pixel[valid]
    weights = class_weights.to(losses.dtype)[labels[valid]] if class_weights is not None else None
    if ohem_threshold is not None:
        with torch.no_grad():
            prob = torch.exp(-losses)
            kept = min(ohem_min_kept, losses.numel())
            threshold = max(ohem_threshold, torch.kthvalue(prob, kept).values.item())
            hard = prob <= threshold
        losses = losses[hard]
        weights = weights[hard] if weights is not None else None
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / weights.sum()
