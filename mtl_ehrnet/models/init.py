"""Weight initialisation shared by every part of the model family."""
from __future__ import annotations

from typing import Iterable

from torch import nn


def init_conv_bn(module: nn.Module) -> None:
    """He (fan-out) normal init for convs with zero bias, unit-scale zero-shift BN (torchvision's rule)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_prediction_layers(layers: Iterable[nn.Conv2d], std: float = 0.001) -> None:
    """Near-zero init for the convs that emit heatmaps, tags or logits (HigherHRNet uses std 0.001)."""
    for conv in layers:
        nn.init.normal_(conv.weight, std=std)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
