"""Training the multi-task student on task-mixed data with its teachers, on the shared engine."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from torch import nn

from distill.answer_store import TeacherAnswers, answer_identity
from distill.objective import DistillationObjective, KDSettings, task_weight_pair
from distill.teacher_cache import CachedTeacherDataset, TeacherCache, build_on_ranks, cache_sizes
from distill.teacher_sources import CachedTeachers, OnlineTeachers, RecordedTeachers
from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import load_matching_weights, load_weights, save_checkpoint, weight_options
from mtl_ehrnet.data import Cityscapes, CocoKeypoints, MixedTaskDataset, TrainTransform
from mtl_ehrnet.training import FitResult, RunConfig, distributed, fit, pose_recipe
from mtl_ehrnet.training.optim import covering_prefixes
from mtl_ehrnet.training.seeding import seed_everything
from mtl_ehrnet.training.task_loss import ground_truth_loss
from teachers.flip_average import FlipAveragedTeacher
from teachers.frozen import load_teacher
from teachers.validators import JointValidator

PathLike = Union[str, Path]
# The cache letterboxes the whole image, so its long side fits; a training crop spans the short side,
# zoomed by up to 1/0.8. Letterboxed at the student's input size, a 4:3 image reached the teachers at
# 0.8x the scale of the student's crop, and the replay upsampled their maps by 1.07-1.67x, blurring the
# heatmap peaks the student then learned.
CACHE_SCALE = 1.5


def joint_validator(joint_root: PathLike) -> JointValidator:
    """Validation on a split labelled for both tasks (``synth``'s ``joint/``): AP, mIoU and their mean
    ``score``, split over the ranks under ``torchrun``."""
    return JointValidator(joint_root)


def default_cache_size(input_hw: Tuple[int, int]) -> int:
    """The cache's square letterbox for a student input of ``input_hw``: its long side times
    :data:`CACHE_SCALE`, rounded up to a multiple of 32."""
    return int(math.ceil(max(input_hw) * CACHE_SCALE / 32) * 32)


def check_init_lr_factor(value: float) -> float:
    """Refuses a learning-rate factor for loaded weights that is not finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"init_lr_factor (--init-lr-factor) must be finite and > 0, got {value}")
    return value


def student_run_config(epochs: int, run: Optional[RunConfig], changes: Dict[str, Any]) -> RunConfig:
    """A student's run settings: ``run``, or the thesis's pose recipe for ``epochs`` with ``changes``, monitoring
    the joint ``score``."""
    if run is not None and changes:
        raise ValueError(f"give the run's settings either as run= or as RunConfig changes, not both: {sorted(changes)}")
    return run or pose_recipe(epochs, monitor="score", **changes)


def student_sets(coco: Tuple[PathLike, PathLike], cityscapes: PathLike, size: Tuple[int, int],
                 augmentation: Optional[Dict[str, Any]]) -> Tuple[TrainTransform, CocoKeypoints, Cityscapes]:
    """A joint student's augmentation and its two training sets: the pose images of ``coco`` (annotation json,
    image dir) that show people, and the ``cityscapes`` train split, both augmented to ``size``."""
    augment = TrainTransform(size, **(augmentation or {}))
    return (augment, CocoKeypoints(coco[1], coco[0], augment, skip_empty=True),
            Cityscapes(cityscapes, "train", augment))


def student_teachers(paths: Mapping[str, PathLike], flip: bool) -> Dict[str, nn.Module]:
    """{task: frozen teacher} from {task: checkpoint}, flip-averaged where ``flip``
    (:class:`teachers.flip_average.FlipAveragedTeacher`): as a distillation run and the recording of its teachers'
    answers both build them."""
    teachers = {task: load_teacher(path) for task, path in paths.items()}
    return {task: FlipAveragedTeacher(teacher) for task, teacher in teachers.items()} if flip else teachers


def train_student(
    student: str,
    out: PathLike,
    *,
    coco: Tuple[PathLike, PathLike],
    cityscapes: PathLike,
    pose_teacher: Optional[PathLike] = None,
    seg_teacher: Optional[PathLike] = None,
    joint_val: Optional[PathLike] = None,
    cache: Optional[PathLike] = None,
    input_size: Optional[int] = None,
    epochs: int = 300,
    settings: KDSettings = KDSettings(),
    resume: bool = False,
    run: Optional[RunConfig] = None,
    augmentation: Optional[Dict[str, Any]] = None,
    ae_weight: float = 1e-3,
    ae_push: str = "exp",
    class_weights: str = "none",
    ohem: Optional[float] = None,
    init_weights: Optional[PathLike] = None,
    task_weights: Tuple[float, float] = (1.0, 1.0),
    init_lr_factor: float = 1.0,
    cache_input_size: Optional[Union[int, Sequence[int]]] = None,
    cache_mirrored: bool = False,
    cache_blend: bool = False,
    concurrent_teachers: bool = False,
    recorded_answers: Optional[PathLike] = None,
    **changes: Any,
) -> FitResult:
    """Trains a multi-task student on COCO-format pose images and Cityscapes-format segmentation images.

    Without teachers this is the ground-truth-only joint baseline. The result directory holds
    ``student.pt``: the student alone (best validation score when validated, else last), which
    ``evaluate``, ``benchmark`` and ``predict`` accept.

    Args:
        student: a multi-task model name (``mtl_h-4``...).
        coco: (annotation json, image dir) of the pose set; cityscapes: root of the segmentation set.
        pose_teacher, seg_teacher: teacher checkpoints (``train-teacher`` results).
        joint_val: a root labelled for both tasks (``synth``'s ``joint/``) to validate on each epoch.
        cache: teacher-output cache directory (teachers run once per image, before augmentation).
        settings: distillation settings.
        augmentation: :class:`TrainTransform` options for both sets (HigherHRNet's when unset).
        ae_weight, ae_push, class_weights, ohem: the ground-truth terms, as for a teacher
            (:func:`mtl_ehrnet.training.task_loss.ground_truth_loss`).
        init_weights: a checkpoint whose weights start the student where the names match
            (:func:`mtl_ehrnet.checkpoint.load_matching_weights`): a pose or segmentation model of the
            student's width gives it a trained backbone, body and head.
        task_weights: (pose, seg) factors on every term of each task, labels and teachers alike
            (:class:`distill.objective.DistillationObjective`).
        init_lr_factor: learning-rate factor of the weights ``init_weights`` loaded (the new ones train at
            the full rate): Adam's first steps at the full rate undo much of what a trained model knows.
        cache_input_size: the square letterbox the cached teachers see (a multiple of 32), or several: each
            image is cached at each and every sample reads the one nearest its augmented scale
            (:func:`distill.teacher_cache.nearest_cache_size`); by default the student's input size scaled by
            :data:`CACHE_SCALE` (see there).
        cache_mirrored: the cache also holds each image's mirror run through the teachers, which mirrored
            samples read (a second teacher pass per image and size).
        cache_blend: with several cache sizes, each sample mixes the two whose scales bracket its own
            (:func:`distill.teacher_cache.bracketing_cache_sizes`) instead of reading the nearest.
        concurrent_teachers: online teachers run in a worker thread beside the student's forward pass
            (:class:`distill.teacher_sources.OnlineTeachers`); the same maps, sooner where a core is spare, as in a
            run of one torch thread on a machine of several.
        recorded_answers: a directory of teacher answers recorded ahead for this run's batches
            (:func:`distill.record_answers.record_teacher_answers`): the teachers it holds are read from it, the
            same maps to the bit, and the others run online.
    """
    check_init_lr_factor(init_lr_factor)
    if settings.hints and cache is not None and (pose_teacher or seg_teacher):
        raise ValueError("feature hints (kd.hints) read the teachers' trunk features, which a teacher cache does not "
                         "hold: they need online teachers; drop the cache (--cache) or the hints")
    if cache_blend and cache is None:
        raise ValueError("cache_blend (--cache-blend) mixes two cached sizes per sample: give --cache DIR")
    if recorded_answers is not None and cache is not None:
        raise ValueError("recorded teacher answers (recorded_answers) and a teacher cache (--cache) are two sources of "
                         "the teachers' maps: give one")
    config = student_run_config(epochs, run, changes)
    # Before the cache build, which the ranks share, each on its own device; fit keeps this group.
    context = distributed.setup(config.device)
    seed_everything(config.seed)
    options = weight_options(init_weights) if init_weights is not None else {}
    net = create_model(student, **options, **({"input_size": input_size} if input_size else {}))
    if set(net.tasks) != {"pose", "seg"}:
        raise ValueError(f"the student must be a multi-task model (mtl_*), got {student} with heads {net.tasks}")
    if init_weights is not None:
        report = load_matching_weights(net, init_weights)
        print(f"student {student} initialised from {init_weights}: {len(report.loaded)} weights loaded, "
              f"{len(report.missing)} left at their initialisation")
        if init_lr_factor != 1.0:
            config.lr_factors = {prefix: init_lr_factor for prefix in covering_prefixes(net, set(report.loaded))}
    elif init_lr_factor != 1.0:
        raise ValueError(f"init_lr_factor {init_lr_factor} scales the learning rate of the weights --init-weights "
                         "loads; give --init-weights")
    size = net.input_size
    sizes = cache_sizes(cache_input_size or default_cache_size(size), blend=cache_blend) if cache is not None else ()
    augment, pose_set, seg_set = student_sets(coco, cityscapes, size, augmentation)
    gt = ground_truth_loss(("pose", "seg"), ae_weight=ae_weight, ae_push=ae_push, class_weights=class_weights,
                           ohem=ohem, cityscapes=cityscapes)
    teachers = student_teachers({task: path for task, path in (("pose", pose_teacher), ("seg", seg_teacher))
                                 if path is not None}, settings.teacher_flip)
    # The teachers answer online on every batch, or once into the cache whose maps each batch then carries.
    source = (CachedTeachers(tuple(teachers)) if cache is not None and teachers
              else OnlineTeachers(teachers, concurrent=concurrent_teachers))
    if recorded_answers is not None:
        paths = {task: path for task, path in (("pose", pose_teacher), ("seg", seg_teacher)) if path is not None}
        answers = TeacherAnswers.open(recorded_answers)
        answers.check(answer_identity({task: paths[task] for task in answers.tasks if task in paths}, config,
                                      context.device, settings.teacher_flip, concurrent_teachers))
        source = RecordedTeachers(teachers, answers, concurrent=concurrent_teachers)
    # Without teachers the same objective weighs and balances the ground-truth terms alone
    # (no hints: they need a teacher).
    loss_fn = DistillationObjective(net.body.out_channels, None, None,
                                    settings if teachers else replace(settings, hints=False), gt=gt,
                                    task_weights=task_weight_pair(task_weights), source=source)
    if cache is not None and teachers:
        identity = {task: f"{Path(p).resolve()}@{Path(p).stat().st_mtime_ns}"
                    for task, p in (("pose", pose_teacher), ("seg", seg_teacher)) if p}
        if settings.teacher_flip:
            identity["teacher_flip"] = "mean of the image's and its mirror's pass"
        store = TeacherCache(cache, teachers, sizes, identity, mirrored=cache_mirrored,
                             tag_kd=settings.tag_kd if "pose" in teachers else "none")
        build_on_ranks(store, {"pose": pose_set, "seg": seg_set}, context, batch_size=config.batch_size)
        pose_set, seg_set = (CachedTeacherDataset(pose_set, store, "pose", cache_blend),
                             CachedTeacherDataset(seg_set, store, "seg", cache_blend))
    config.extra.update(student=student, pose_teacher=str(pose_teacher), seg_teacher=str(seg_teacher),
                        kd=settings.__dict__, augmentation=augment.settings(),
                        init_weights=None if init_weights is None else str(init_weights),
                        task_weights=list(task_weights), init_lr_factor=init_lr_factor, ae_weight=ae_weight,
                        ae_push=ae_push, class_weights=class_weights, ohem=ohem)
    validate = joint_validator(joint_val) if joint_val else None
    result = fit(net, loss_fn, MixedTaskDataset([pose_set, seg_set]), config, out, validate=validate, resume=resume)
    if isinstance(source, RecordedTeachers):
        print(f"teacher answers: {source.read} of {source.asked} batches' {', '.join(source.answers.tasks)} maps read "
              f"from {source.answers.root}, the rest answered online")
    final = result.best_checkpoint or result.last_checkpoint
    load_weights(net, final)
    save_checkpoint(Path(out) / "student.pt", net.cpu())
    from evaluation.plots import plot_training_log

    plot_training_log(Path(out) / "log.jsonl", Path(out) / "curves.png")
    return result
