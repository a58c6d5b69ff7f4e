"""A teacher that answers with the average of its pass over the image and over the image's mirror.

Flip testing makes a pose model's maps markedly better (the quick start's pose teacher: AP 0.182 on
its own, 0.211 flip-tested), so targets averaged this way teach a student more than the teacher's
single pass: Radosavovic et al. (Data Distillation, 2018) drew keypoint pseudo-labels from such
transformed-input ensembles of one model.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

from mtl_ehrnet.data.skeleton import COCO_FLIP_INDEX, check_flip_index
from mtl_ehrnet.inference.predictor import mirror_average
from teachers.frozen import FrozenTeacher

JOINT_MAPS = ("heatmaps", "heatmaps_lr")
CLASS_MAPS = ("seg",)


class FlipAveragedTeacher(FrozenTeacher):
    """Runs a frozen teacher on ``cat(images, images.flip(-1))`` and merges the two passes.

    Heatmaps (both resolutions) and segmentation logits are averaged with the mirrored pass turned back
    (joints swapped by ``flip_index``). Tags and trunk features come from the plain pass alone: the two
    passes' tag values are not on one scale, so their mean would mean nothing.

    Args:
        teacher: a trained model or a :class:`FrozenTeacher` (:func:`teachers.load_teacher`); frozen as
            :class:`FrozenTeacher` freezes it.
        flip_index: joint permutation under a horizontal mirror (COCO default).

    Shape: as the wrapped teacher; the batch is run twice as large.
    """

    def __init__(self, teacher: nn.Module, flip_index: Sequence[int] = COCO_FLIP_INDEX) -> None:
        super().__init__(teacher.model if isinstance(teacher, FrozenTeacher) else teacher)
        self.register_buffer(
            "flip_index", torch.as_tensor(check_flip_index(flip_index, len(flip_index))), persistent=False
        )

    def forward(self, images: torch.Tensor, **kwargs: bool) -> Dict[str, torch.Tensor]:
        n = images.shape[0]
        both = super().forward(torch.cat((images, images.flip(-1))), **kwargs)
        merged: Dict[str, torch.Tensor] = {}
        for key, value in both.items():
            if key in JOINT_MAPS:
                merged[key] = mirror_average(value[:n], value[n:], self.flip_index)
            elif key in CLASS_MAPS:
                merged[key] = mirror_average(value[:n], value[n:])
            elif isinstance(value, (list, tuple)):
                merged[key] = type(value)(v[:n] for v in value)
            else:
                merged[key] = value[:n]
        return merged
