"""Compound-scaling rules of EfficientHRNet (thesis section 3.2, Table 3.1).

One place for every formula that turns the scaling coefficient phi into sizes:

* EfficientNet backbone: depth ``d = 1.2**phi``, width ``w = 1.1**phi`` (eq. 3.4); channels are
  rounded with :func:`make_divisible` and repeats with :func:`scale_depth`, exactly as torchvision's
  ``_MBConvConfig.adjust_channels`` / ``adjust_depth`` do.
* HRNet branch widths: ``ceil(c * 1.2455**phi)`` for the H0 widths ``c = 32, 64, 128, 256``. The thesis
  prints the factor as 1.25 (eq. 3.5), but its Table 3.1 (H-3's 67 and H-4's 54 on branch 3) only
  follows from the reference implementation's 1.2455, which we therefore use.
* Modules per stage: H0 has (1, 4, 3). Scaling down removes one module per step from stage s2 until it
  reaches one, then from stage s3 (Table 3.1). We extrapolate the same linear rule to any phi:
  ``M_s2 = max(1, 4 + phi)`` (so scaling up adds to s2 first) and ``M_s3 = max(1, 3 + min(0, phi + 3))``;
  ``M_s1`` stays 1.
* Input resolution: ``R = 512 + 32 * phi`` (eq. 3.6), at least 64.
* Classifier input (compact EfficientNets B0...B-4, thesis 3.2 and Table 4.1): ``ceil(224 * 1.15**phi)``
  gives 224, 195, 170, 148, 129; Table 4.1 prints 224, 195, 170, **145**, **128**. B-3's 145 follows from
  no rounding of the formula (224 * 1.15**-3 = 147.28) and B-4's 128 is the formula rounded down, not up
  (128.07). :func:`classifier_input_size` uses the printed sizes for the five thesis models (the sizes
  they were trained and measured at) and the formula for every other phi.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

DEPTH_BASE = 1.2
WIDTH_BASE = 1.1
RESOLUTION_BASE = 1.15
HRNET_WIDTH_BASE = 1.2455
H0_BRANCH_WIDTHS = (32, 64, 128, 256)
H0_MODULES = (1, 4, 3)
# Input sizes printed in thesis Table 4.1 for B0, B-1, ..., B-4.
THESIS_CLASSIFIER_SIZES: Dict[int, int] = {0: 224, -1: 195, -2: 170, -3: 145, -4: 128}


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Rounds ``value`` to the nearest multiple of ``divisor``, never dropping below 90 % of it.

    This is the MobileNet/EfficientNet channel rounding (same result as torchvision's).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def width_multiplier(phi: float) -> float:
    """EfficientNet width multiplier ``1.1**phi``."""
    return WIDTH_BASE**phi


def depth_multiplier(phi: float) -> float:
    """EfficientNet depth multiplier ``1.2**phi``."""
    return DEPTH_BASE**phi


def scale_depth(repeats: int, depth_mult: float) -> int:
    """Number of block repeats after depth scaling: ``ceil(repeats * depth_mult)``."""
    return int(math.ceil(repeats * depth_mult))


def branch_widths(phi: float) -> Tuple[int, int, int, int]:
    """HRNet branch widths ``W_b1..W_b4`` for coefficient ``phi``."""
    factor = HRNET_WIDTH_BASE**phi
    return tuple(int(math.ceil(c * factor)) for c in H0_BRANCH_WIDTHS)  # type: ignore[return-value]


def stage_modules(phi: int) -> Tuple[int, int, int]:
    """HRNet modules per stage ``(M_s1, M_s2, M_s3)`` for integer ``phi`` (see module docstring)."""
    s1, s2, s3 = H0_MODULES
    return s1, max(1, s2 + phi), max(1, s3 + min(0, phi + 3))


def input_resolution(phi: float) -> int:
    """Native square input size ``512 + 32 * phi`` (a multiple of 32, at least 64)."""
    return max(64, int(512 + 32 * phi))


def classifier_resolution(phi: float) -> int:
    """Classifier input size by the formula ``ceil(224 * 1.15**phi)`` (thesis section 3.2, eq. 3.4).

    Table 4.1 prints other sizes for phi = -3 and -4 (145 and 128, not 148 and 129); see
    :func:`classifier_input_size`.
    """
    return int(math.ceil(224 * RESOLUTION_BASE**phi))


def classifier_input_size(phi: int) -> int:
    """Native classifier input: the Table 4.1 size for phi = 0...-4, else :func:`classifier_resolution`."""
    return THESIS_CLASSIFIER_SIZES.get(phi, classifier_resolution(phi))
