"""HRNet's own stem and stage 1, as a backbone for the classic HigherHRNet / HRNet baselines.

Two 3x3 stride-2 convs (64 channels) and a stage of BOTTLENECK blocks give one stride-4 map; the
HRNet body then grows its lower-resolution branches with strided convs (``BodyConfig.new_branch =
"strided"``). This is the thesis's comparison row HigherHRNet-W32 and HRNetV2-W18-small-v2.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from mtl_ehrnet.models.blocks import Bottleneck, make_blocks


class HRNetStemBackbone(nn.Module):
    """HRNet stem + stage 1.

    Args:
        stem_channels: width of the two stride-2 stem convs (64 in HRNet).
        stage1_blocks: BOTTLENECK blocks in stage 1 (4 in HRNet-W32, 2 in W18-small-v2).
        stage1_channels: bottleneck width of stage 1; output is 4x that (256).

    Shape: (B, 3, H, W) -> [(B, 4 * stage1_channels, H / 4, W / 4)].
    """

    strides: Tuple[int, ...] = (4,)

    def __init__(self, stem_channels: int = 64, stage1_blocks: int = 4, stage1_channels: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            Conv2dNormActivation(3, stem_channels, 3, 2, activation_layer=nn.ReLU),
            Conv2dNormActivation(stem_channels, stem_channels, 3, 2, activation_layer=nn.ReLU),
        )
        self.stage1 = make_blocks(Bottleneck, stem_channels, stage1_channels, stage1_blocks)
        self.out_channels: Tuple[int, ...] = (stage1_channels * Bottleneck.expansion,)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [self.stage1(self.stem(x))]
