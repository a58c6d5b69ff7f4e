"""The distillation job's configuration: one frozen tree, read from YAML and written to ``OUT/config.yaml``.

Every setting of ``mtl-ehrnet distill`` lives here; the command line keeps the everyday ones and reaches the
rest with ``--set section.key=value`` (``docs/distillation.md`` lists them all).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Optional, Tuple

from distill.objective import KDSettings, task_weight_pair
from distill.student import check_init_lr_factor
from distill.teacher_cache import cache_sizes
from mtl_ehrnet.training import RunConfig
from mtl_ehrnet.training.job_config import Augmentation, GroundTruthTerms, recipe_run, resolved_run
from mtl_ehrnet.training.run_config import pose_recipe


@dataclass(frozen=True)
class Data:
    """The training sets: ``coco`` is (annotation file, image directory), ``cityscapes`` the root of the
    segmentation set; ``joint_val`` a split labelled for both tasks, validated each epoch."""

    coco: Optional[Tuple[str, str]] = None
    cityscapes: Optional[str] = None
    joint_val: Optional[str] = None
    input_size: Optional[int] = None
    augmentation: Augmentation = field(default_factory=Augmentation)


@dataclass(frozen=True)
class Teachers:
    """The frozen teachers' checkpoints, and the cache of their outputs (``cache``: its directory; None runs
    them online on every batch). ``recorded_answers``: a directory of answers recorded ahead for this run's
    batches (``mtl-ehrnet record-answers``), read instead of running those teachers;
    ``concurrent``: online teachers run in a worker thread beside the student's forward pass."""

    pose: Optional[str] = None
    seg: Optional[str] = None
    cache: Optional[str] = None
    cache_input_size: Optional[Tuple[int, ...]] = None
    cache_mirrored: bool = False
    cache_blend: bool = False
    recorded_answers: Optional[str] = None
    concurrent: bool = False

    def __post_init__(self) -> None:
        if self.cache is not None and self.recorded_answers is not None:
            raise ValueError("teachers.cache and teachers.recorded_answers are two sources of the teachers' maps: "
                             "give one")


@dataclass(frozen=True)
class DistillLoss(GroundTruthTerms):
    """The ground-truth terms, and the factor on every term of each task, labels and teachers alike
    (``task_weights``: pose, seg)."""

    task_weights: Tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        task_weight_pair(self.task_weights)


@dataclass(frozen=True)
class Init:
    """Start the student from the weights of ``weights`` that it shares by name, those training at
    ``lr_factor`` times the rate."""

    weights: Optional[str] = None
    lr_factor: float = 1.0


@dataclass(frozen=True)
class DistillConfig:
    """One distillation run: the student, its data, teachers, KD and ground-truth losses, its start, and the
    training run (``run``: :class:`~mtl_ehrnet.training.RunConfig` fields over the pose recipe)."""

    student: Optional[str] = None
    data: Data = field(default_factory=Data)
    teachers: Teachers = field(default_factory=Teachers)
    kd: KDSettings = field(default_factory=KDSettings)
    loss: DistillLoss = field(default_factory=DistillLoss)
    init: Init = field(default_factory=Init)
    run: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_init_lr_factor(self.init.lr_factor)
        if self.teachers.cache is not None and self.teachers.cache_input_size:
            cache_sizes(self.teachers.cache_input_size, blend=self.teachers.cache_blend)
        self.run_config()  # refuses unknown or bad run settings before anything trains

    def check_complete(self) -> None:
        """Refuses a config that names no student or lacks a training set (what the command line requires)."""
        missing = [key for key, value in (("student", self.student), ("data.coco", self.data.coco),
                                          ("data.cityscapes", self.data.cityscapes)) if value is None]
        if missing:
            raise ValueError(f"the config sets no {', '.join(missing)} (--student, --coco, --cityscapes, or the "
                             "--config YAML)")

    def run_config(self) -> RunConfig:
        """The resolved training run: the pose recipe for ``run["epochs"]`` (300 when unset), ``run``'s fields
        over it, validated each epoch on ``score``."""
        return recipe_run(pose_recipe, self.run, monitor="score")

    def resolved(self) -> "DistillConfig":
        """This config with ``run`` holding every resolved RunConfig field, so that it reproduces the run alone
        (the loaded weights' ``lr_factors`` and the ``extra`` record are set by the run itself)."""
        return replace(self, run=resolved_run(self.run_config()))
