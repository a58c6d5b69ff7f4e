"""Where the objective's teacher maps come from: each source answers a training batch with the teachers' maps
already in the frame of the batch's augmented samples, so the objective only compares.

- :class:`OnlineTeachers` runs the frozen teachers on the student's input (flip-averaged ones included:
  ``OnlineTeachers(teachers, flip=True)``, see :class:`teachers.flip_average.FlipAveragedTeacher`);
- :class:`RecordedTeachers` reads what a teacher answered to each of the run's batches, recorded ahead of the run
  (:mod:`distill.answer_store`), and runs the others online;
- :class:`CachedTeachers` replays the entries a :class:`distill.teacher_cache.CachedTeacherDataset` put in the batch
  through each sample's augmentation (:func:`distill.replay.replay_cached`).

A source of your own subclasses :class:`TeacherSource` and is passed as ``DistillationObjective(..., source=...)``.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from distill.answer_store import TeacherAnswers
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

    def prepare(self, batch: Dict[str, torch.Tensor], features: bool = False) -> None:
        """Called with the batch before the student's forward pass; a source may start its answer here."""

    def forward(self, batch: Dict[str, torch.Tensor], features: bool = False) -> Dict[str, torch.Tensor]:
        raise NotImplementedError


_TEACHER_THREAD: Optional[ThreadPoolExecutor] = None


def _teacher_thread() -> ThreadPoolExecutor:
    """One worker thread per process for concurrent teachers (not a module attribute: sources are deep-copied)."""
    global _TEACHER_THREAD
    if _TEACHER_THREAD is None:
        _TEACHER_THREAD = ThreadPoolExecutor(1, thread_name_prefix="teachers")
    return _TEACHER_THREAD


def _autocast_state(device: str) -> Optional[Tuple[str, torch.dtype]]:
    """(device type, dtype) of the autocast this thread runs under on ``device``, or None."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return (device, torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else None
    if device == "cpu":
        return ("cpu", torch.get_autocast_cpu_dtype()) if torch.is_autocast_cpu_enabled() else None
    return (device, torch.get_autocast_gpu_dtype()) if torch.is_autocast_enabled() else None


class OnlineTeachers(TeacherSource):
    """The frozen teachers run on the student's input every step (``flip``: each answers with the mean of its pass
    over the image and over its mirror).

    ``concurrent``: the teachers run in a worker thread while the student's forward pass runs (started by
    :meth:`prepare`), with the same kernels and so the same maps to the bit; it pays where a core is spare beside
    each torch thread of the run, as in a run of one torch thread on a machine of several cores.
    """

    def __init__(self, teachers: Mapping[str, nn.Module], flip: bool = False, concurrent: bool = False) -> None:
        super().__init__()
        wrap = FlipAveragedTeacher if flip else (lambda teacher: teacher)
        self.teachers = nn.ModuleDict({task: wrap(teacher) for task, teacher in teachers.items()
                                       if teacher is not None})
        self.tasks = tuple(self.teachers)
        self.concurrent = concurrent
        self._pending: Optional[Tuple[torch.Tensor, bool, Future]] = None

    def _answer(self, images: torch.Tensor, features: bool, autocast: Optional[Tuple[str, torch.dtype]] = None,
                skip: Sequence[str] = ()) -> Dict[str, torch.Tensor]:
        """The teachers' maps for ``images``, but those of the tasks in ``skip``."""
        merged: Dict[str, torch.Tensor] = {}
        with torch.autocast(autocast[0], dtype=autocast[1]) if autocast else contextlib.nullcontext():
            for task, teacher in self.teachers.items():
                if task not in skip:
                    merged.update(teacher(images, **({"return_features": True} if features else {})))
        return merged

    def _answer_with_threads(self, threads: int, images: torch.Tensor, features: bool,
                             autocast: Optional[Tuple[str, torch.dtype]]) -> Dict[str, torch.Tensor]:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return self._answer(images, features, autocast)

    def prepare(self, batch: Dict[str, torch.Tensor], features: bool = False) -> None:
        if not self.concurrent:
            return
        images = batch["image"]
        device = images.device.type
        # Autocast and the torch thread count are per thread (a thread keeps the count it had at its first parallel
        # kernel): the worker takes the caller's, so the maps are those of a pass in this thread.
        autocast, threads = _autocast_state(device), torch.get_num_threads()
        self._pending = (images, features,
                         _teacher_thread().submit(self._answer_with_threads, threads, images, features, autocast))

    def forward(self, batch: Dict[str, torch.Tensor], features: bool = False) -> Dict[str, torch.Tensor]:
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is batch["image"] and pending[1] == features:
            return pending[2].result()
        if pending is not None:
            pending[2].result()  # a stale answer (another batch): wait for it, then answer this one here
        return self._answer(batch["image"], features)


class RecordedTeachers(OnlineTeachers):
    """Online teachers, but for the tasks whose answers to this run's batches were recorded ahead of it
    (:mod:`distill.answer_store`): those are read instead, the same maps to the bit; a batch the recording lacks,
    or a pass that needs the teachers' features, is answered online.

    ``read`` and ``asked`` count the batches answered from the recording and all batches.
    """

    def __init__(self, teachers: Mapping[str, nn.Module], answers: TeacherAnswers, flip: bool = False,
                 concurrent: bool = False) -> None:
        super().__init__(teachers, flip, concurrent)
        unknown = sorted(set(answers.tasks) - set(self.tasks))
        if unknown:
            raise ValueError(f"the answers in {answers.root} are for {unknown}, which has no teacher here: "
                             f"teachers {list(self.tasks)}")
        self.answers = answers
        self.read = self.asked = 0

    def _answer(self, images: torch.Tensor, features: bool, autocast: Optional[Tuple[str, torch.dtype]] = None,
                skip: Sequence[str] = ()) -> Dict[str, torch.Tensor]:
        self.asked += 1
        recorded = None if features else self.answers.find(images)
        if recorded is None:
            return super()._answer(images, features, autocast, skip)
        self.read += 1
        return {**super()._answer(images, features, autocast, (*skip, *self.answers.tasks)), **recorded}


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
