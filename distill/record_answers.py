"""Recording teachers' answers to a distillation run's batches ahead of the run (:mod:`distill.answer_store`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from tqdm import tqdm

from distill.answer_store import TeacherAnswers, answer_identity, batch_key
from distill.student import student_run_config, student_sets, student_teachers
from distill.teacher_sources import OnlineTeachers
from mtl_ehrnet import create_model
from mtl_ehrnet.data import MixedTaskDataset
from mtl_ehrnet.training import RunConfig, distributed
from mtl_ehrnet.training.engine import autocast_dtype, epoch_steps, run_memory_format, training_batches

PathLike = Union[str, Path]


def record_teacher_answers(
    teachers: Mapping[str, PathLike],
    student: str,
    out: PathLike,
    *,
    coco: Tuple[PathLike, PathLike],
    cityscapes: PathLike,
    input_size: Optional[int] = None,
    epochs: int = 300,
    augmentation: Optional[Dict[str, Any]] = None,
    teacher_flip: bool = False,
    concurrent_teachers: bool = False,
    run: Optional[RunConfig] = None,
    resume: bool = True,
    **changes: Any,
) -> Path:
    """Records what ``teachers`` answer to every batch of a :func:`distill.student.train_student` run into ``out``;
    that run, given ``recorded_answers=out``, reads them instead of running those teachers.

    The run is described by the same arguments ``train_student`` takes (the data, ``student``, ``input_size``,
    ``epochs``, ``augmentation``, ``teacher_flip``, ``concurrent_teachers`` and its run settings), and this
    process must have the torch threads the run will have: the batches are the run's to the bit
    (:func:`mtl_ehrnet.training.engine.training_batches`), and so are the answers. Batches already recorded for
    the same teachers and settings by an interrupted call are kept (``resume``; ``False`` records every batch
    again). Returns the recording's manifest. Run it on one process (not under ``torchrun``).

    Args:
        teachers: {task: teacher checkpoint} of the teachers to record (``pose``, ``seg``).
    """
    config = student_run_config(epochs, run, changes)
    context = distributed.setup(config.device)
    if context.world > 1:
        raise ValueError(f"record teacher answers on one process: this one is rank {context.rank} of "
                         f"{context.world}")
    size = create_model(student, **({"input_size": input_size} if input_size else {})).input_size
    _, pose_set, seg_set = student_sets(coco, cityscapes, size, augmentation)
    # The teachers as the run's objective holds them: built alike, on its device, in its memory format, in a thread
    # of their own where the run's are.
    source = OnlineTeachers(student_teachers(teachers, teacher_flip), concurrent=concurrent_teachers)
    source.to(context.device, memory_format=run_memory_format(config))
    answers = TeacherAnswers(out, answer_identity(teachers, config, context.device, teacher_flip, concurrent_teachers))
    answers.start(resume)
    amp = autocast_dtype(config, context.device)
    train_set = MixedTaskDataset([pose_set, seg_set])
    steps = config.epochs * epoch_steps(train_set, config)
    started, recorded = time.perf_counter(), 0
    for _, _, batch in tqdm(training_batches(train_set, config, context.device), total=steps,
                            desc=f"answers of the {' and '.join(answers.tasks)} teacher", leave=False):
        key = batch_key(batch["image"])  # hashed once: 1.5 MB a batch at the quick start's size
        if answers.stored(key):
            continue
        with torch.autocast(context.device.type, dtype=amp, enabled=amp is not None):
            source.prepare(batch)
            answer = source(batch)
        answers.write(key, answer)
        recorded += 1
    manifest = answers.finish(steps)
    print(f"teacher answers: {recorded} of {steps} batches' {', '.join(answers.tasks)} maps recorded in "
          f"{time.perf_counter() - started:.0f} s into {out}")
    return manifest
