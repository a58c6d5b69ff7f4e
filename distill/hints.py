"""Feature hints (FitNets): shared-trunk features regress the teacher's through 1x1 adapters."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FeatureHints(nn.Module):
    """One 1x1 conv per hinted branch maps student channels to teacher channels; loss = MSE.

    Args:
        student_channels: channels of the student trunk's branches.
        teacher_channels: channels of the teacher's matching branches (same strides).
    Shape: lists of (B, C_i, H_i, W_i) -> (B,) mean over branches of the per-image MSE; the teacher map is
        resized when its resolution differs.
    """

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(
                "hints need as many teacher branches as student branches: "
                f"{len(student_channels)} vs {len(teacher_channels)}"
            )
        self.adapters = nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in zip(student_channels, teacher_channels))
        for adapter, s, t in zip(self.adapters, student_channels, teacher_channels):
            if s == t:  # start as the identity, so equal features give 0
                nn.init.dirac_(adapter.weight)
                nn.init.zeros_(adapter.bias)

    def forward(self, student: List[torch.Tensor], teacher: List[torch.Tensor]) -> torch.Tensor:
        total = 0
        for adapter, s, t in zip(self.adapters, student, teacher):
            projected = adapter(s.float())
            target = t.float().detach()
            if target.shape[-2:] != projected.shape[-2:]:
                target = F.interpolate(target, size=projected.shape[-2:], mode="bilinear", align_corners=False)
            total = total + (projected - target).square().mean(dim=(1, 2, 3))
        return total / len(self.adapters)
