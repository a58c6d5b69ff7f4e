"""A segmentation teacher from segmentation-models-pytorch, wrapped to the library's output contract."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from mtl_ehrnet.config_keys import reject_unknown_keys
from mtl_ehrnet.models.size_check import check_input_size
from mtl_ehrnet.models.weights import read_state_dict

KIND = "smp"


@dataclass(frozen=True)
class SmpConfig:
    """Architecture of an smp model: ``arch`` (e.g. ``"Unet"``, ``"FPN"``, ``"DeepLabV3Plus"``) and
    ``encoder`` (e.g. ``"resnet18"``, ``"mobilenet_v2"``)."""

    arch: str
    encoder: str
    num_classes: int = 19
    input_size: Tuple[int, int] = (512, 512)
    name: str = ""

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["kind"] = KIND
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SmpConfig":
        values = {k: v for k, v in data.items() if k != "kind"}
        reject_unknown_keys(cls, values, "smp model config")
        values["input_size"] = tuple(values["input_size"])
        return cls(**values)

    def describe(self) -> str:
        return f"smp {self.arch}/{self.encoder} C={self.num_classes}"


class SmpSegmentationTeacher(nn.Module):
    """``smp.create_model(arch, encoder)`` returning ``{"seg": (B, C, H/4, W/4)}`` logits.

    smp predicts at full resolution; the logits are average-pooled to stride 4 so that the teacher and
    EfficientHRNet students share one output contract (losses upsample them to label size again).

    Args:
        config: architecture.
        encoder_weights: ``None`` (random init) or a local state-dict file for the encoder. Nothing is
            ever downloaded.
    """

    tasks = ("seg",)

    def __init__(self, config: SmpConfig, encoder_weights: Optional[Union[str, Path]] = None) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.config = config
        try:
            self.net = smp.create_model(
                config.arch, encoder_name=config.encoder, encoder_weights=None, classes=config.num_classes
            )
        except (KeyError, ValueError) as err:
            raise ValueError(f"segmentation-models-pytorch cannot build {config.arch}/{config.encoder}: {err}") from err
        if encoder_weights is not None:
            result = self.net.encoder.load_state_dict(read_state_dict(encoder_weights), strict=False)
            if len(result.missing_keys) == len(self.net.encoder.state_dict()):
                raise ValueError(f"no key of {encoder_weights} matches the {config.encoder} encoder")

    @property
    def input_size(self) -> Tuple[int, int]:
        return self.config.input_size

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        check_input_size(images, 32)
        return {"seg": F.avg_pool2d(self.net(images), 4)}


def parse_smp_name(name: str) -> Tuple[str, str]:
    """``"smp:ARCH:ENCODER"`` -> (arch, encoder)."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != "smp" or not parts[1] or not parts[2]:
        raise ValueError(f"expected smp:ARCH:ENCODER (e.g. smp:Unet:resnet18), got {name!r}")
    return parts[1], parts[2]


def from_config(config: Dict[str, Any]) -> "SmpSegmentationTeacher":
    """The smp model a checkpoint config describes (fresh weights): the ``smp`` kind of
    :func:`mtl_ehrnet.checkpoint.load_model`."""
    return SmpSegmentationTeacher(SmpConfig.from_dict(config))
