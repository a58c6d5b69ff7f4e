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

    Computed with masks rather than by selecting the labelled pixels, so that nothing is read back from the
    device (a boolean selection waits for the GPU to count what it selected).

    Args:
        logits: (B, C, h, w) at stride 4.
        labels: (B, H, W) train ids, 255 = ignore; uint8 as batches carry them (an eighth of the bytes to load
            and copy) or int64.
        ohem_threshold: if set, only pixels whose true-class probability is below it count, but never
            fewer than ``ohem_min_kept`` hardest pixels (HRNet's OHEM cross-entropy).
        class_weights: (C,) per-class weights; the loss is then the weighted mean over pixels.
    Returns:
        Scalar; 0 (with a gradient path) when no pixel is labelled.
    """
    logits = upsample_logits(logits, labels.shape[-2:])
    labels = labels.long()
    valid = labels != IGNORE_INDEX
    pixel = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")  # (B, H, W), 0 where ignored
    weights = valid.to(pixel.dtype)
    if class_weights is not None:
        classes = class_weights.to(pixel.dtype)
        weights = weights * classes[torch.where(valid, labels, 0)]
    if ohem_threshold is not None:
        with torch.no_grad():
            prob = torch.where(valid, torch.exp(-pixel), torch.inf).flatten()
            # The k-th smallest over every pixel: ignored ones sit above all labelled ones, and with fewer than k
            # labelled pixels it is inf, which keeps them all, as keeping min(k, labelled) hardest would.
            kth = torch.kthvalue(prob, min(ohem_min_kept, prob.numel())).values
            hard = prob.reshape(pixel.shape) <= kth.clamp(min=ohem_threshold)
        weights = weights * hard
    total = weights.sum()
    return (pixel * weights).sum() / torch.where(total > 0, total, torch.ones_like(total))
