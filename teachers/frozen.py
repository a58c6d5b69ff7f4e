"""Frozen teachers: eval mode, no gradients, whatever their parent module does."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import torch
from torch import nn

from mtl_ehrnet.checkpoint import read_checkpoint
from mtl_ehrnet.models.config import ModelConfig
from mtl_ehrnet.models.efficienthrnet import EfficientHRNet
from teachers.smp_teacher import KIND as SMP_KIND
from teachers.smp_teacher import SmpConfig, SmpSegmentationTeacher


class FrozenTeacher(nn.Module):
    """Wraps a trained model so that it stays in eval mode with ``requires_grad=False``.

    ``train()`` on a parent module (a student's training wrapper, say) reaches this module too; it is
    ignored, so BN statistics and dropout of the teacher never change. Outputs come from
    ``torch.no_grad``.

    Shape: as the wrapped model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)

    @property
    def tasks(self):  # noqa: ANN201
        return self.model.tasks

    @property
    def config(self):  # noqa: ANN201
        return self.model.config

    @property
    def input_size(self):  # noqa: ANN201
        return self.model.input_size

    def forward(self, images: torch.Tensor, **kwargs: bool) -> Dict[str, torch.Tensor]:
        with torch.no_grad():
            return self.model(images, **kwargs)


def load_teacher(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> FrozenTeacher:
    """Loads a teacher checkpoint (EfficientHRNet preset, baseline or smp model), frozen and in eval mode."""
    data = read_checkpoint(path, map_location)
    config = data["config"]
    if config.get("kind") == SMP_KIND:
        model: nn.Module = SmpSegmentationTeacher(SmpConfig.from_dict(config))
    else:
        model = EfficientHRNet(ModelConfig.from_dict(config))
    model.load_state_dict(data["model"])
    return FrozenTeacher(model.to(map_location))
