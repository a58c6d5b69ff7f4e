"""Compound-scaled EfficientNet feature extractor (thesis section 3.2, eq. 3.4).

Built from torchvision's EfficientNet parts (``_efficientnet_conf``, ``MBConv``,
``Conv2dNormActivation``) with the same module names as ``torchvision.models.efficientnet_b0``'s
``features``, so a torchvision classification state dict of the same phi loads directly. The
1280-channel classification head is left out: the HRNet body reads four taps instead.
"""
from __future__ import annotations

import copy
from functools import partial
from typing import List, Tuple

import torch
from torch import nn
from torchvision.models.efficientnet import _efficientnet_conf
from torchvision.ops.misc import Conv2dNormActivation

from mtl_ehrnet.models.init import init_conv_bn
from mtl_ehrnet.models.same_padding import use_same_padding
from mtl_ehrnet.models.scaling import depth_multiplier, width_multiplier

# Indices into ``features`` whose outputs are the stride 4, 8, 16 and 32 taps (MBConv stages 2, 3, 5, 7).
TAP_INDICES = (2, 3, 5, 7)


def _no_squeeze_excitation(*args: object, **kwargs: object) -> nn.Module:
    return nn.Identity()


class EfficientNetBackbone(nn.Module):
    """EfficientNet-B(phi) without its classification head, returning four feature maps.

    Args:
        phi: compound scaling coefficient; width ``1.1**phi``, depth ``1.2**phi``. Any real value.
        lite: EfficientNet-lite style (thesis 5.2): no squeeze-excite, ReLU6 instead of SiLU.
        stochastic_depth_prob: maximum drop-path rate, linearly increasing over blocks (torchvision's rule).
        tf_padding: TensorFlow "SAME" padding in the strided convs (:mod:`~mtl_ehrnet.models.same_padding`),
            as EfficientHRNet's reference code and timm's ``tf_efficientnet_*`` compute.
        bn_eps: BatchNorm epsilon (1e-3 in TensorFlow-trained weights).

    Attributes:
        out_channels: channels of the four taps, e.g. (24, 40, 112, 320) for phi = 0.
        strides: (4, 8, 16, 32).

    Shape: (B, 3, H, W) -> list of 4 maps (B, out_channels[i], H / strides[i], W / strides[i]).
    """

    strides: Tuple[int, ...] = (4, 8, 16, 32)

    def __init__(
        self,
        phi: float = 0.0,
        lite: bool = False,
        stochastic_depth_prob: float = 0.2,
        tf_padding: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.phi, self.lite = phi, lite
        norm = partial(nn.BatchNorm2d, eps=bn_eps)
        setting, _ = _efficientnet_conf(
            "efficientnet_b0", width_mult=width_multiplier(phi), depth_mult=depth_multiplier(phi)
        )
        activation = nn.ReLU6 if lite else nn.SiLU
        layers: List[nn.Module] = [
            Conv2dNormActivation(3, setting[0].input_channels, 3, 2, norm_layer=norm, activation_layer=activation)
        ]
        total_blocks = sum(cnf.num_layers for cnf in setting)
        block_id = 0
        for cnf in setting:
            stage: List[nn.Module] = []
            for i in range(cnf.num_layers):
                block_cnf = copy.copy(cnf)
                if i > 0:
                    block_cnf.input_channels, block_cnf.stride = cnf.out_channels, 1
                drop = stochastic_depth_prob * block_id / total_blocks
                se_layer = _no_squeeze_excitation if lite else None
                block = cnf.block(block_cnf, drop, norm, **({"se_layer": se_layer} if lite else {}))
                stage.append(block)
                block_id += 1
            layers.append(nn.Sequential(*stage))
        self.features = nn.Sequential(*layers)
        if lite:
            _replace_modules(self.features, nn.SiLU, partial(nn.ReLU6, inplace=True))
        if tf_padding:
            use_same_padding(self.features)
        self.out_channels: Tuple[int, ...] = tuple(setting[i - 1].out_channels for i in TAP_INDICES)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAP_INDICES:
                taps.append(x)
        return taps


def _replace_modules(root: nn.Module, kind: type, factory: "partial[nn.Module]") -> None:
    for name, child in root.named_children():
        if isinstance(child, kind):
            setattr(root, name, factory())
        else:
            _replace_modules(child, kind, factory)
