"""The compound-scaling rules reproduce the thesis's Table 3.1 and DESIGN's tap channels."""
import pytest
from torchvision.models._utils import _make_divisible

from mtl_ehrnet.models.backbone import EfficientNetBackbone
from mtl_ehrnet.models.scaling import (
    branch_widths,
    classifier_resolution,
    input_resolution,
    make_divisible,
    stage_modules,
)

# Thesis Table 3.1: phi -> (input, widths, modules).
TABLE_3_1 = {
    0: (512, (32, 64, 128, 256), (1, 4, 3)),
    -1: (480, (26, 52, 103, 206), (1, 3, 3)),
    -2: (448, (21, 42, 83, 166), (1, 2, 3)),
    -3: (416, (17, 34, 67, 133), (1, 1, 3)),
    -4: (384, (14, 27, 54, 107), (1, 1, 2)),
}
# DESIGN.md section 3: EfficientNet tap channels at strides 4, 8, 16, 32.
TAP_CHANNELS = {
    0: (24, 40, 112, 320),
    -1: (24, 40, 104, 288),
    -2: (24, 32, 96, 264),
    -3: (24, 32, 88, 240),
    -4: (16, 32, 80, 216),
}


@pytest.mark.parametrize("phi", sorted(TABLE_3_1))
def test_table_3_1(phi: int) -> None:
    size, widths, modules = TABLE_3_1[phi]
    assert input_resolution(phi) == size
    assert branch_widths(phi) == widths
    assert stage_modules(phi) == modules


@pytest.mark.parametrize("phi", sorted(TAP_CHANNELS))
def test_backbone_tap_channels(phi: int) -> None:
    assert EfficientNetBackbone(phi).out_channels == TAP_CHANNELS[phi]


def test_extrapolation_beyond_the_table() -> None:
    assert stage_modules(-5) == (1, 1, 1)
    assert stage_modules(-9) == (1, 1, 1)
    assert stage_modules(1) == (1, 5, 3)
    assert branch_widths(1) == (40, 80, 160, 319)
    assert input_resolution(1) == 544


@pytest.mark.parametrize("value", [3.3, 8, 13.7, 26.4, 100.0, 218.6, 331.2])
def test_make_divisible_matches_torchvision(value: float) -> None:
    assert make_divisible(value, 8) == _make_divisible(value, 8)


def test_classifier_resolution_formula() -> None:
    # Table 4.1 prints 195 and 170 for B-1 and B-2; the formula agrees there and gives 148, 129 below.
    assert [classifier_resolution(p) for p in (0, -1, -2, -3, -4)] == [224, 195, 170, 148, 129]
