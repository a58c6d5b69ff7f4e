"""TensorFlow-style "SAME" padding for the EfficientNet backbone.

TensorFlow pads a strided convolution asymmetrically: the total padding ``p = max((ceil(i / s) - 1) * s +
k - i, 0)`` is split ``p // 2`` before and ``p - p // 2`` after. For the even sizes that every stride-2
layer of a 32-divisible input sees, that is ``(0, 1)`` for a 3x3 and ``(1, 2)`` for a 5x5 kernel, where
PyTorch pads 1 and 2 on both sides. Weights trained that way (EfficientHRNet's reference code, timm's
``tf_efficientnet_*`` ports of the TensorFlow checkpoints) need it to compute what they were trained to.
Stride-1 convolutions with odd kernels pad symmetrically either way and are left alone.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> Tuple[int, int]:
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" zero padding computed from the input size.

    Same parameters and state-dict keys as the ``nn.Conv2d`` it replaces.

    Shape: (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride)).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        return self._conv_forward(F.pad(x, (left, right, top, bottom)), self.weight, self.bias)


def use_same_padding(module: nn.Module) -> None:
    """Replaces every strided ``nn.Conv2d`` under ``module`` by a :class:`SamePadConv2d` in place.

    The replacement shares the original's parameters, so the state dict is unchanged.
    """
    for name, child in module.named_children():
        if type(child) is nn.Conv2d and max(child.stride) > 1:
            conv = SamePadConv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                child.stride,
                0,
                child.dilation,
                child.groups,
                child.bias is not None,
                device=child.weight.device,
                dtype=child.weight.dtype,
            )
            conv.weight = child.weight
            conv.bias = child.bias
            setattr(module, name, conv)
        else:
            use_same_padding(child)
