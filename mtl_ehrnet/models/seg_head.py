"""HRNet-V2 style segmentation head (thesis fig. 3.2, Segmentation Network)."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation


class SegHead(nn.Module):
    """Upsamples branches 2-4 bilinearly to branch 1, concatenates, mixes and classifies.

    Args:
        in_channels: channels of the four branches (their sum is the head's width).
        num_classes: C (Cityscapes: 19 train ids).

    Shape: 4 maps, branch i (B, in_channels[i], H / 2**(i+2), W / 2**(i+2)) -> {"seg": (B, C, H/4, W/4)}
        logits; losses and inference upsample them to label size.
    """

    branches_read = 4

    def __init__(self, in_channels: Sequence[int], num_classes: int = 19) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        width = sum(in_channels)
        self.num_classes = num_classes
        self.mix = Conv2dNormActivation(width, width, 1, activation_layer=nn.ReLU)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def prediction_layers(self) -> Tuple[nn.Conv2d, ...]:
        """The conv that emits class logits."""
        return (self.classifier,)

    def forward(self, branches: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        size = branches[0].shape[-2:]
        maps = [branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]]
        return {"seg": self.classifier(self.mix(torch.cat(maps, dim=1)))}
