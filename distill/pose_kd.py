"""Pose knowledge distillation: heatmaps to the teacher's, tags through teacher-grouped pseudo-keypoints
or relationally (tags mean nothing in absolute value, only which of them are alike)."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from mtl_ehrnet.inference.grouping import group_poses
from mtl_ehrnet.training.pose_loss import associative_embedding


def heatmap_kd(
    student: Dict[str, torch.Tensor], teacher: Dict[str, torch.Tensor], mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Per-image MSE to the teacher's heatmaps at both resolutions (summed, weight 1 each, as the GT loss).

    Args:
        student, teacher: dicts with ``"heatmaps"`` (B, K, H/2, W/2) and ``"heatmaps_lr"`` (B, K, H/4, W/4).
        mask: optional (B, H/4, W/4) weights at stride 4 (upsampled for stride 2), e.g. 0 on padding.
    Returns:
        (B,); 0 when the student equals the teacher.
    """
    total = 0
    for key in ("heatmaps", "heatmaps_lr"):
        error = (student[key].float() - teacher[key].float()).square()
        if mask is not None:
            m = mask if mask.shape[-2:] == error.shape[-2:] else nn.functional.interpolate(
                mask[:, None], size=error.shape[-2:], mode="nearest")[:, 0]
            error = error * m[:, None]
        total = total + error.mean(dim=(1, 2, 3))
    return total


PSEUDO_THRESHOLDS = {"min_score": 0.3, "min_joint_value": 0.3, "max_people": 30}


def pseudo_people(
    heatmaps: torch.Tensor,
    tags: torch.Tensor,
    min_score: float = 0.3,
    min_joint_value: float = 0.3,
    max_people: int = 30,
) -> List[torch.Tensor]:
    """The teacher's confident people, grouped from its maps (:func:`group_poses`, a host algorithm).

    People whose score is below ``min_score`` are dropped and joints whose value is below
    ``min_joint_value`` marked invisible. The batch's maps come to the host in one copy.

    Args:
        heatmaps, tags: (B, K, h, w) teacher maps at stride 4.
    Returns:
        per image (P, K, 3) float32 on the CPU, P <= ``max_people``: x, y in map pixels and the visible flag.
    """
    host_heatmaps, host_tags = torch.stack([heatmaps.float(), tags.float()]).cpu()
    found = []
    for b in range(heatmaps.shape[0]):
        keypoints, scores = group_poses(host_heatmaps[b], host_tags[b], max_people=max_people)
        people = torch.as_tensor(keypoints, dtype=torch.float32)[
            torch.as_tensor(scores) >= min_score][:max_people].clone()
        people[..., 2] = (people[..., 2] >= min_joint_value).float()
        found.append(people)
    return found


def pseudo_joints(
    heatmaps: torch.Tensor,
    tags: torch.Tensor,
    min_score: float = 0.3,
    min_joint_value: float = 0.3,
    max_people: int = 30,
) -> torch.Tensor:
    """Teacher-grouped pseudo-keypoints (:func:`pseudo_people`) as associative-embedding targets at stride 4.

    The targets go back to the maps' device without a wait: with the host copy of the maps, the step's one
    wait for the device besides the engine's.

    Args:
        heatmaps, tags: (B, K, h, w) teacher maps at stride 4.
    Returns:
        (B, max_people, K, 2) int64 on the maps' device: flat index ``y * w + x`` and visible flag — the
        ``joints`` format.
    """
    batch, k, h, w = heatmaps.shape
    joints = torch.zeros(batch, max_people, k, 2, dtype=torch.long)
    for b, people in enumerate(pseudo_people(heatmaps, tags, min_score, min_joint_value, max_people)):
        if len(people) == 0:
            continue
        x = people[..., 0].round().long().clamp(0, w - 1)
        y = people[..., 1].round().long().clamp(0, h - 1)
        joints[b, : len(people), :, 0] = y * w + x
        joints[b, : len(people), :, 1] = people[..., 2].long()
    return joints.to(heatmaps.device, non_blocking=True)


def tag_kd_pseudo(
    student_tags: torch.Tensor, teacher: Dict[str, torch.Tensor], push_kind: str = "exp", **thresholds: float
) -> torch.Tensor:
    """AE pull + push of the student's tags on the teacher's confident pseudo-keypoints.

    Args:
        push_kind: the push term, as the ground-truth loss's (:func:`associative_embedding`).
    Returns:
        (B,) pull + push (unscaled; weight like the GT AE terms).
    """
    joints = pseudo_joints(teacher["heatmaps_lr"].detach(), teacher["tags"].detach(), **thresholds)
    pull, push = associative_embedding(student_tags.float(), joints, push_kind)
    return pull + push


def tag_kd_relational(
    student_tags: torch.Tensor,
    teacher_tags: torch.Tensor,
    teacher_heatmaps: torch.Tensor,
    threshold: float = 0.3,
    max_points: int = 256,
) -> torch.Tensor:
    """Relational tag distillation: the student's pairwise tag affinities ``exp(-(t_i - t_j)^2)`` match the
    teacher's over the locations where the teacher sees a joint (heatmap above ``threshold``).

    Invariant to any shift of the tag values, which carry no meaning by themselves. The confident points are
    weighted in, not selected, so that no count is read back from the device.

    Args:
        student_tags, teacher_tags, teacher_heatmaps: (B, K, h, w) at stride 4.
    Returns:
        (B,) mean squared affinity difference over confident pairs; 0 when the student equals the teacher
        (or differs by a constant), 0 when fewer than two points are confident.
    """
    s = student_tags.float().flatten(1)
    t = teacher_tags.float().flatten(1)
    scores, index = teacher_heatmaps.float().flatten(1).topk(min(max_points, s.shape[1]), dim=1)  # (B, P)
    confident = (scores > threshold).to(s.dtype)
    sv, tv = s.gather(1, index), t.gather(1, index)
    affinity_s = torch.exp(-(sv[:, :, None] - sv[:, None, :]).square())
    affinity_t = torch.exp(-(tv[:, :, None] - tv[:, None, :]).square())
    pairs = confident[:, :, None] * confident[:, None, :]  # (B, P, P)
    return ((affinity_s - affinity_t).square() * pairs).sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp(min=1)
