"""Residual blocks of HRNet: BASIC (two 3x3 convs) and BOTTLENECK (1x1, 3x3, 1x1)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation


class BasicBlock(nn.Module):
    """HRNet's BASIC block: ``relu(x + bn(conv3x3(relu(bn(conv3x3(x))))))``.

    A 1x1 conv + BN projects the shortcut when the channel count or stride changes.

    Args:
        in_channels: C_in.
        channels: C_out.
        stride: stride of the first conv.
    Shape: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = Conv2dNormActivation(in_channels, channels, 3, stride, activation_layer=nn.ReLU)
        self.conv2 = Conv2dNormActivation(channels, channels, 3, activation_layer=None)
        self.shortcut: Optional[nn.Module] = _projection(in_channels, channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class Bottleneck(nn.Module):
    """HRNet's BOTTLENECK block (ResNet v1.5 layout), output ``4 * channels`` wide.

    Shape: (B, C_in, H, W) -> (B, 4 * channels, H / stride, W / stride).
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = Conv2dNormActivation(in_channels, channels, 1, activation_layer=nn.ReLU)
        self.conv2 = Conv2dNormActivation(channels, channels, 3, stride, activation_layer=nn.ReLU)
        self.conv3 = Conv2dNormActivation(channels, out_channels, 1, activation_layer=None)
        self.shortcut: Optional[nn.Module] = _projection(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


def _projection(in_channels: int, out_channels: int, stride: int) -> Optional[nn.Module]:
    if in_channels == out_channels and stride == 1:
        return None
    return Conv2dNormActivation(in_channels, out_channels, 1, stride, activation_layer=None)


def make_blocks(block: type, in_channels: int, channels: int, count: int) -> nn.Sequential:
    """``count`` blocks in sequence; only the first changes the channel count."""
    layers = [block(in_channels, channels)]
    layers += [block(channels * block.expansion, channels) for _ in range(count - 1)]
    return nn.Sequential(*layers)
