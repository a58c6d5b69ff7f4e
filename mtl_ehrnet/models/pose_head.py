"""HigherHRNet heatmap + associative-embedding head (thesis fig. 3.1, Heatmap Prediction Network)."""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from mtl_ehrnet.models.blocks import BasicBlock


class PoseHead(nn.Module):
    """Heatmaps and tags at stride 4, then a deconv block for heatmaps at stride 2.

    A 1x1 conv on branch 1 predicts K heatmaps and K tags (one tag per joint). The deconv block reads
    branch 1 concatenated with those 2K maps: ConvTranspose 4x4 stride 2 + BN + ReLU to
    ``deconv_channels``, ``deconv_blocks`` BASIC blocks, then a 1x1 conv to K heatmaps.

    Args:
        in_channels: channels of branch 1.
        num_keypoints: K (COCO: 17).
        deconv_channels: width of the deconv block (scaled like branch 1 of the body).
        deconv_blocks: BASIC blocks after the transposed conv (EfficientHRNet 2, HigherHRNet 4).

    Shape: [(B, in_channels, H/4, W/4), ...] -> {"heatmaps_lr": (B, K, H/4, W/4),
        "tags": (B, K, H/4, W/4), "heatmaps": (B, K, H/2, W/2)}.
    """

    branches_read = 1

    def __init__(
        self, in_channels: int, num_keypoints: int = 17, deconv_channels: int = 32, deconv_blocks: int = 2
    ) -> None:
        super().__init__()
        if num_keypoints < 1:
            raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
        self.num_keypoints = num_keypoints
        self.final_lr = nn.Conv2d(in_channels, 2 * num_keypoints, 1)
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(in_channels + 2 * num_keypoints, deconv_channels, 4, 2, 1, bias=False),
            nn.BatchNorm2d(deconv_channels),
            nn.ReLU(inplace=True),
            *(BasicBlock(deconv_channels, deconv_channels) for _ in range(deconv_blocks)),
        )
        self.final_hr = nn.Conv2d(deconv_channels, num_keypoints, 1)

    def prediction_layers(self) -> Tuple[nn.Conv2d, ...]:
        """The convs that emit heatmaps and tags."""
        return (self.final_lr, self.final_hr)

    def forward(self, branches: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        x = branches[0]
        lr = self.final_lr(x)
        hr = self.final_hr(self.deconv(torch.cat((x, lr), dim=1)))
        k = self.num_keypoints
        return {"heatmaps": hr, "heatmaps_lr": lr[:, :k], "tags": lr[:, k:]}
