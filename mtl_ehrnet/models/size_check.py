"""Input-size rules: sides must be multiples of the network's total stride (32)."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def nearest_valid_size(height: int, width: int, multiple: int = 32) -> Tuple[int, int]:
    """The closest (H, W) whose sides are positive multiples of ``multiple``."""
    return (max(multiple, round(height / multiple) * multiple), max(multiple, round(width / multiple) * multiple))


def check_input_size(images: torch.Tensor, multiple: int = 32) -> None:
    """Raises a ValueError naming the nearest valid size when ``images`` (B, 3, H, W) does not fit.

    Skipped while tracing (ONNX export): the exported graph has a fixed size checked at export time.
    """
    if torch.jit.is_tracing():
        return
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    height, width = int(images.shape[-2]), int(images.shape[-1])
    if height % multiple or width % multiple:
        h, w = nearest_valid_size(height, width, multiple)
        raise ValueError(
            f"input {height}x{width} is not a multiple of {multiple}; nearest valid size is {h}x{w} "
            f"(resize, or pad with mtl_ehrnet.pad_to_multiple)"
        )


def pad_to_multiple(
    images: torch.Tensor, multiple: int = 32, value: float = 0.0
) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Pads the bottom and right of (B, C, H, W) images up to multiples of ``multiple``.

    Returns:
        The padded images and the (pad_bottom, pad_right) that was added, so outputs can be cropped
        back: a map at stride s keeps its first ``ceil(H / s)`` rows of real content.
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), value=value)
    return images, (pad_h, pad_w)
