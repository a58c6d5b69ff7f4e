"""Which EfficientNet-B(phi) a file's trunk is: stem width, stage widths and blocks per stage."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from torchvision.models.efficientnet import _efficientnet_conf

from mtl_ehrnet.models.scaling import depth_multiplier, width_multiplier

# The phis searched when a file's trunk is identified (EfficientHRNet's published ones are -4 ... 0).
SEARCHED_PHIS = range(-12, 9)


class EfficientNetSignature(NamedTuple):
    """Stem channels, output channels of the 7 MBConv stages, and blocks in each stage."""

    stem: int
    widths: Tuple[int, ...]
    depths: Tuple[int, ...]

    def describe(self) -> str:
        return f"stem {self.stem}, stage widths {list(self.widths)}, blocks per stage {list(self.depths)}"


def signature_of_phi(phi: int) -> EfficientNetSignature:
    """The trunk of our ``efficientnet_b<phi>`` (width ``1.1**phi``, depth ``1.2**phi``)."""
    setting, _ = _efficientnet_conf(
        "efficientnet_b0", width_mult=width_multiplier(phi), depth_mult=depth_multiplier(phi)
    )
    return EfficientNetSignature(
        setting[0].input_channels, tuple(c.out_channels for c in setting), tuple(c.num_layers for c in setting)
    )


def phi_of(signature: EfficientNetSignature) -> Optional[int]:
    """The phi whose trunk has exactly this signature, or None."""
    return next((phi for phi in SEARCHED_PHIS if signature_of_phi(phi) == signature), None)
