"""Frozen teachers: eval mode, no gradients, whatever their parent module does."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import torch
from torch import nn

from mtl_ehrnet.checkpoint import load_model
from mtl_ehrnet.inference.fold_batchnorm import fold_batch_norms


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
    """Loads a teacher checkpoint (EfficientHRNet preset, baseline or smp model), frozen and in eval mode, its
    batch norms folded into the convolutions before them (the same outputs up to float rounding, and a teacher
    pass 10-15 % shorter on a CPU)."""
    model = load_model(path, map_location).eval()
    fold_batch_norms(model)
    return FrozenTeacher(model)
