"""Published checkpoints (EfficientHRNet, HigherHRNet, HRNet-seg, torchvision / timm EfficientNet) -> our models."""

from mtl_ehrnet.convert.converter import LAYOUTS, convert_checkpoint, known_sources
from mtl_ehrnet.convert.report import ConversionReport

__all__ = ["ConversionReport", "LAYOUTS", "convert_checkpoint", "known_sources"]
