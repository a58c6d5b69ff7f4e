"""Ground-truth pose losses of HigherHRNet (DESIGN section 4): masked heatmap MSE and the
associative-embedding pull/push loss. Every function returns one value per image so that task-mixed
batches can average over the images that carry pose labels only."""
from __future__ import annotations

from typing import Tuple

import torch

PUSH_KINDS = ("exp", "max")


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean squared error per image.

    Args:
        pred, target: (B, K, H, W) heatmaps.
        mask: (B, H, W) weights, 0 on crowd regions and unlabelled people.
    Returns:
        (B,) mean over K, H, W of ``(pred - target)**2 * mask``.
    """
    return ((pred - target).square() * mask[:, None]).mean(dim=(1, 2, 3))


def associative_embedding(
    tags: torch.Tensor, joints: torch.Tensor, push_kind: str = "exp"
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pull and push losses of associative embedding (Newell et al. 2017), one tag per joint.

    pull = mean over people of the mean squared distance of their joints' tags to their mean tag;
    push = (sum_{i!=j} f(ref_i - ref_j)) / (N (N - 1)) * 0.5 over the N people's mean tags, with
    f(d) = exp(-d**2) (``push_kind="exp"``, HigherHRNet's COCO setting) or max(0, 1 - |d|) (``"max"``,
    its other loss type). Images with no person, or one (push), give exactly 0, never NaN.

    ``exp`` has no gradient where two people's tags are equal, and the heads start with near-equal tags, so
    in short runs the tags can stay collapsed; ``max`` pushes equal tags apart at a constant rate.

    Args:
        tags: (B, K, H, W) tag maps at stride 4.
        joints: (B, M, K, 2) int64, per person and joint the flat index ``y * W + x`` into that joint's
            tag map and a visible flag (0/1).
        push_kind: ``"exp"`` or ``"max"``.
    Returns:
        pull, push: (B,) each (unscaled; HigherHRNet weights both by 1e-3).
    """
    if push_kind not in PUSH_KINDS:
        raise ValueError(f"push_kind must be one of {PUSH_KINDS}, got {push_kind!r}")
    batch, k = tags.shape[:2]
    flat = tags.reshape(batch, k, -1)  # (B, K, HW)
    index = joints[..., 0].clamp(min=0, max=flat.shape[-1] - 1)  # (B, M, K)
    visible = (joints[..., 1] > 0).to(tags.dtype)  # (B, M, K)
    # values[b, m, j] = flat[b, j, index[b, m, j]]
    values = torch.gather(flat, 2, index.permute(0, 2, 1)).permute(0, 2, 1)  # (B, M, K)
    count = visible.sum(dim=2)  # (B, M)
    present = (count > 0).to(tags.dtype)
    mean = (values * visible).sum(dim=2) / count.clamp(min=1)  # (B, M)
    spread = ((values - mean[..., None]).square() * visible).sum(dim=2) / count.clamp(min=1)
    people = present.sum(dim=1)  # (B,)
    pull = (spread * present).sum(dim=1) / people.clamp(min=1)
    diff = mean[:, :, None] - mean[:, None, :]
    # Off-diagonal pairs only: the same as subtracting N from the full sum, without float cancellation.
    off_diagonal = 1 - torch.eye(mean.shape[1], dtype=tags.dtype, device=tags.device)
    pair = present[:, :, None] * present[:, None, :] * off_diagonal
    closeness = torch.exp(-diff.square()) if push_kind == "exp" else (1 - diff.abs()).clamp(min=0)
    push = (closeness * pair).sum(dim=(1, 2)) / (people * (people - 1)).clamp(min=1) * 0.5
    return pull, push
