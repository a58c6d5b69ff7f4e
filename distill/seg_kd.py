"""Segmentation knowledge distillation: pixel-wise KL at temperature T, and channel-wise distillation."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _match(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The teacher's logits resized to the student's map (teachers may predict at another stride)."""
    if teacher.shape[-2:] == student.shape[-2:]:
        return teacher
    return F.interpolate(teacher.float(), size=student.shape[-2:], mode="bilinear", align_corners=False)


def pixel_kl(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Per-image mean over pixels of KL(teacher || student) of the class distributions at temperature T, x T².

    Args:
        student, teacher: (B, C, h, w) logits.
        mask: optional (B, h, w) pixel weights (e.g. 0 on padding).
    Returns:
        (B,); 0 when the logits are equal.
    """
    teacher = _match(student, teacher).float().detach()
    log_p_s = F.log_softmax(student.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # (B, h, w)
    if mask is not None:
        return (kl * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1) * temperature**2
    return kl.mean(dim=(1, 2)) * temperature**2


def channel_wise(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Channel-wise distillation (Shu et al. 2021): each class channel's spatial softmax at temperature T;
    KL(teacher || student) summed over pixels, averaged over channels, x T².

    Returns:
        (B,); 0 when the logits are equal.
    """
    teacher = _match(student, teacher).float().detach()
    b, c = student.shape[:2]
    log_p_s = F.log_softmax(student.float().reshape(b, c, -1) / temperature, dim=2)
    log_p_t = F.log_softmax(teacher.reshape(b, c, -1) / temperature, dim=2)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=2)  # (B, C)
    return kl.mean(dim=1) * temperature**2
