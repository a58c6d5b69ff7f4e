"""Where the objective's teacher maps come from: each source answers a training batch with the teachers' maps
already in the frame of the batch's augmented samples, so the objective only compares.

- :class:`OnlineTeachers` runs the frozen teachers on the student's input (flip-averaged ones included:
  ``OnlineTeachers(teachers, flip=True)``, see :class:`teachers.flip_average.FlipAveragedTeacher`);
- :class:`CachedTeachers` replays the entries a :class:`distill.teacher_cache.CachedTeacherDataset` put in the batch
  through each sample's augmentation (:func:`distill.replay.replay_cached`).

A source of your own subclasses :class:`TeacherSource` and is passed as ``DistillationObjective(..., source=...)``.
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import torch
from torch import nn

from distill.replay import replay_cached
from distill.teacher_cache import cached_outputs
from mtl_ehrnet.data.skeleton import COCO_FLIP_INDEX
from teachers.flip_average import FlipAveragedTeacher


class TeacherSource(nn.Module):
    """The teachers' answer for a batch. ``tasks``: the tasks it answers for (``pose``, ``seg``).

    ``forward(batch, features=False)`` returns, for a batch of B samples whose student input is (B, 3, H, W):
    ``heatmaps`` (B, K, H/2, W/2), ``heatmaps_lr`` and ``tags`` (B, K, H/4, W/4) for pose, ``seg`` (B, C, H/4,
    W/4) for segmentation; a source may add ``joints`` (B, P, K, 2, teacher-grouped people at stride 4) and
    ``valid_lr`` (B, H/4, W/4, where its maps hold the sample), and with ``features`` the teacher's ``trunk``.
    """

    tasks: Tuple[str, ...] = ()

    def forward(self, batch: Dict[str, torch.Tensor], features: bool = False) -> Dict[str, torch.Tensor]:
        raise NotImplementedError


class OnlineTeachers(TeacherSource):
    """The frozen teachers run on the student's input every step (``flip``: each answers with the mean of its pass
    over the image and over its mirror)."""

    def __init__(self, teachers: Mapping[str, nn.Module], flip: bool = False) -> None:
        super().__init__()
        wrap = FlipAveragedTeacher if flip else (lambda teacher: teacher)
        self.teachers = nn.ModuleDict({task: wrap(teacher) for task, teacher in teachers.items()
                                       if teacher is not None})
        self.tasks = tuple(self.teachers)

    def forward(self, batch: Dict[str, torch.Tensor], features: bool = False) -> Dict[str, torch.Tensor]:
        merged: Dict[str, torch.Tensor] = {}
        for teacher in self.teachers.values():
            merged.update(teacher(batch["image"], **({"return_features": True} if features else {})))
        return merged


class CachedTeachers(TeacherSource):
    """The teachers' cached maps that the batch carries, warped into each sample's augmented frame.

    Args:
        tasks: the tasks the cache holds.
        flip_index: (K,) joint permutation of mirrored samples.
    """

    def __init__(self, tasks: Sequence[str], flip_index: Sequence[int] = COCO_FLIP_INDEX) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.flip_index: torch.Tensor
        # A buffer, so that it moves to the training device with the objective and the replay of every step
        # finds it there instead of copying it from the host.
        self.register_buffer("flip_index", torch.as_tensor(list(flip_index), dtype=torch.long), persistent=False)

    def forward(self, batch: Dict[str, torch.Tensor], features: bool = False) -> Dict[str, torch.Tensor]:
        if features:
            raise ValueError("a cache holds no teacher features: feature hints need the teachers online")
        cached = cached_outputs(batch)
        if cached is None:
            raise ValueError("the batch carries no cached teacher maps: wrap the dataset in CachedTeacherDataset, "
                             "or distil from OnlineTeachers")
        return replay_cached(cached, batch["affine"], tuple(batch["image"].shape[-2:]), self.flip_index)
