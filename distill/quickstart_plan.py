"""The quick start's recipe (:class:`QuickstartPlan`): the generated set, the models, each run's settings and
steps, checked before anything is written."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from distill.objective import KDSettings, task_weight_pair
from distill.student import check_init_lr_factor, default_cache_size
from distill.teacher_cache import cache_sizes
from mtl_ehrnet.config_tree import from_tree, read_tree
from mtl_ehrnet.data.mixed import split_batch
from mtl_ehrnet.data.scene import SceneOptions
from mtl_ehrnet.recipes import recipe_path
from mtl_ehrnet.training import RunConfig
from mtl_ehrnet.training.task_loss import ground_truth_loss

PathLike = Union[str, Path]
RUNS = ("pose_teacher", "seg_teacher", "pose_student_gt", "seg_student_gt", "joint_student_gt", "joint_student_kd")


@dataclass(frozen=True)
class QuickstartPlan:
    """The quick start's recipe: the generated set, the models, each run's settings and steps.

    The shipped recipe (``mtl_ehrnet/recipes/quickstart.yaml``, :meth:`from_recipe`) is the default; the
    settings are explained in ``docs/distillation.md`` and the measurements behind them in ``docs/results.md``.

    The synthetic set holds ``people`` per image of ``min_person_height``-``max_person_height`` of its height
    (no crowds), upright, so augmentation is milder than HigherHRNet's (``max_rotation``, ``scale_range``) and
    segmentation runs use Adam (``seg_optimizer``). Pose runs weight the associative-embedding terms
    ``ae_weight`` and push with ``ae_push``. The joint students draw pose and segmentation samples at
    ``task_ratios``, scale every pose and segmentation term by ``task_weights``, and start from the pose
    teacher's weights (``student_init``: the pose teacher then has the student's width and is also the separate
    pose student), those weights training at ``init_lr_factor`` times the rate. The distilled student weights the
    teachers' terms on samples that have that task's labels by ``labelled_kd_weight``, its heatmap term by
    ``pose_kd_weight`` and its segmentation term (pixel-wise KL at ``kd_temperature``) by ``seg_kd_weight``;
    ``teacher_flip`` has it learn from flip-averaged teachers, ``teacher_cache`` from cached
    maps (``cache_*`` as ``distill``'s flags).

    ``steps`` fixes each run's length in steps of ``batch_size`` images (validated ``validations`` times), so
    that the same recipe and seed give the same numbers on every machine. ``minutes``, when set, scales every
    run's steps down alike where the timed steps would not fit that wall-clock budget (never up). Every run
    trains with ``threads`` torch threads on any machine, because a run's numbers depend on its thread count;
    spare cores train independent runs side by side instead (:mod:`distill.quickstart_runs`).
    """

    images: int = 800
    image_size: Tuple[int, int] = (160, 120)
    input_size: int = 128
    pose_teacher: str = "pose_h-4"
    seg_teacher: str = "seg_h-3"
    student: str = "mtl_h-4"
    minutes: Optional[float] = None
    batch_size: int = 8
    workers: int = 0
    seed: int = 0
    people: Tuple[int, int] = (1, 2)
    min_person_height: float = 0.6
    max_person_height: Optional[float] = 0.95
    max_rotation: float = 10.0
    scale_range: Tuple[float, float] = (0.8, 1.25)
    seg_optimizer: str = "adam"
    task_ratios: Tuple[float, float] = (1.0, 1.0)
    ae_weight: float = 0.01
    ae_push: str = "max"
    class_weights: str = "none"
    ohem: Optional[float] = None
    ema_decay: Optional[float] = None
    student_init: str = "pose_teacher"
    task_weights: Tuple[float, float] = (1.0, 0.01)
    labelled_kd_weight: float = 1.0
    init_lr_factor: float = 1.0
    teacher_flip: bool = False
    pose_kd_weight: float = 2.0
    seg_kd_weight: float = 1.0
    kd_temperature: float = 1.0
    teacher_cache: bool = False
    cache_input_size: Tuple[int, ...] = ()
    cache_mirrored: bool = False
    cache_blend: bool = False
    steps: Mapping[str, int] = field(default_factory=dict)
    validations: int = 3
    threads: int = 1

    def __post_init__(self) -> None:
        if self.seg_optimizer not in ("adam", "sgd"):
            raise ValueError(f"seg_optimizer must be adam or sgd (the thesis's recipe), got {self.seg_optimizer!r}")
        if len(self.task_ratios) != 2:
            raise ValueError(f"task_ratios must be (pose, seg) shares, got {self.task_ratios}")
        # Refuses negative or all-zero ratios and a batch too small to hold both tasks, before any training.
        split_batch(self.batch_size, self.task_ratios)
        ground_truth_loss(("pose",), **self.ground_truth)  # refuses an unknown push or class-weight rule as early
        RunConfig(ema_decay=self.ema_decay)  # and a decay outside (0, 1)
        task_weight_pair(self.task_weights)
        for key in ("pose_kd_weight", "seg_kd_weight"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be finite and >= 0, got {value}")
        if not (math.isfinite(self.kd_temperature) and self.kd_temperature > 0):
            raise ValueError(f"kd_temperature must be finite and > 0, got {self.kd_temperature}")
        self.kd_settings  # refuses a negative labelled-KD weight as early (the checks above name the recipe keys)
        check_init_lr_factor(self.init_lr_factor)
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError(f"minutes (--minutes) must be finite and > 0, got {self.minutes}")
        if self.validations < 1:
            raise ValueError(f"validations must be >= 1, got {self.validations}")
        if not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")
        self._check_cache_options()
        self._check_steps()
        self.scene  # refuses people or heights the generator would refuse, before anything is written
        if self.student_init not in ("pose_teacher", "none"):
            raise ValueError(f"student_init must be 'pose_teacher' or 'none', got {self.student_init!r}")
        if self.student_init == "pose_teacher" and not self.pose_teacher_is_separate_student:
            raise ValueError(
                f"student_init 'pose_teacher' starts the joint students from the pose teacher's weights, so the pose "
                f"teacher must have the student's width: {self.separate_student('pose')} for {self.student}, got "
                f"{self.pose_teacher} (or --student-init none)"
            )

    def _check_cache_options(self) -> None:
        """Refuses cache options without ``teacher_cache``, and cache sizes :func:`distill.teacher_cache.cache_sizes`
        refuses (not positive multiples of 32, a blend of fewer than two)."""
        chosen = [
            flag
            for flag, on in (
                ("--cache-input-size", bool(self.cache_input_size)),
                ("--cache-mirrored", self.cache_mirrored),
                ("--cache-blend", self.cache_blend),
            )
            if on
        ]
        if chosen and not self.teacher_cache:
            raise ValueError(f"{', '.join(chosen)} shape the teacher cache: add --teacher-cache")
        if self.teacher_cache:
            cache_sizes(self.cache_sizes, blend=self.cache_blend)

    @property
    def cache_sizes(self) -> Tuple[int, ...]:
        """The letterbox sizes the teacher cache holds (the student's input times ``CACHE_SCALE`` unless set)."""
        return tuple(self.cache_input_size) or (default_cache_size((self.input_size, self.input_size)),)

    @property
    def cache_passes(self) -> float:
        """Teacher passes per image the cache costs, in units of one pass at the input size: none without a
        cache; each letterbox is larger than the input, a mirrored cache runs the mirror too, and a
        flip-averaged teacher runs on the mirror of every view."""
        if not self.teacher_cache:
            return 0.0
        views = (2 if self.cache_mirrored else 1) * (2 if self.teacher_flip else 1)
        return views * sum((size / self.input_size) ** 2 for size in self.cache_sizes)

    def separate_student(self, task: str) -> str:
        """The single-task model of the student's width: ``pose_h-4`` for ``mtl_h-4``."""
        return f"{task}_{self.student.split('_', 1)[1]}"

    @property
    def pose_teacher_is_separate_student(self) -> bool:
        """A pose teacher of the student's width is also the separate pose student (trained once)."""
        return self.pose_teacher == self.separate_student("pose")

    @property
    def runs(self) -> Tuple[str, ...]:
        """The runs that train (the separate pose student is the pose teacher when they are one model)."""
        return tuple(r for r in RUNS if not (r == "pose_student_gt" and self.pose_teacher_is_separate_student))

    def _check_steps(self) -> None:
        unknown = sorted(set(self.steps) - set(RUNS))
        if unknown:
            raise ValueError(f"steps of unknown runs {unknown}; runs: {', '.join(RUNS)}")
        missing = [run for run in self.runs if run not in self.steps]
        if missing:
            raise ValueError(f"the recipe gives no steps for {', '.join(missing)} (steps: {{run: steps}})")
        bad = {run: n for run, n in self.steps.items() if not (isinstance(n, int) and n >= self.validations)}
        if bad:
            raise ValueError(f"steps must be integers >= validations ({self.validations}), got {bad}")

    @classmethod
    def from_recipe(cls, path: Optional[PathLike] = None, **changes: Any) -> "QuickstartPlan":
        """The recipe in the YAML file ``path`` (default: the shipped ``quickstart`` recipe), with ``changes``
        on top; an unknown key is refused with the known ones listed."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown recipe keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        path = recipe_path("quickstart") if path is None else path
        return from_tree(cls, {**read_tree(path), **changes}, str(path))

    @property
    def kd_settings(self) -> KDSettings:
        """How the distilled joint student learns from the teachers."""
        return KDSettings(
            labelled_kd_weight=self.labelled_kd_weight,
            teacher_flip=self.teacher_flip,
            temperature=self.kd_temperature,
            weights={"pose/kd_heatmaps": self.pose_kd_weight, "seg/kd": self.seg_kd_weight},
        )

    @property
    def ground_truth(self) -> Dict[str, Any]:
        """The ground-truth loss options of every run (:func:`mtl_ehrnet.training.task_loss.ground_truth_loss`)."""
        return {
            "ae_weight": self.ae_weight,
            "ae_push": self.ae_push,
            "class_weights": self.class_weights,
            "ohem": self.ohem,
        }

    @property
    def augmentation(self) -> Dict[str, Any]:
        return {"max_rotation": self.max_rotation, "scale_range": tuple(self.scale_range)}

    @property
    def scene(self) -> SceneOptions:
        return SceneOptions(
            people=self.people,
            min_person_height=self.min_person_height,
            max_person_height=self.max_person_height,
            crowds=False,
        )

