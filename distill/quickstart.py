"""The whole story on the built-in synthetic data: generate it, train both teachers, the three
ground-truth-only students and the distilled joint student, then compare them in one table.

With a time budget (``minutes``) every run's step is timed first, the budget is shared between the runs,
and it is shared again before each run from the time really left (:mod:`distill.quickstart_budget`);
without one, the plan's fixed epochs are used.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import DataLoader

from distill.objective import KDSettings, task_weight_pair
from distill.quickstart_runs import default_jobs, result_path, run_needs, schedule_seconds, torch_threads, train_runs
from distill.quickstart_schedule import StageSchedule, fitting_scale, scaled_steps, schedule_for_steps
from distill.student import check_init_lr_factor, default_cache_size, train_student
from distill.teacher_cache import cache_sizes
from evaluation.compare import compare_rows, markdown, savings, write_comparison, write_seed_spread
from mtl_ehrnet import create_model
from mtl_ehrnet.config_tree import from_tree, read_tree, write_tree
from mtl_ehrnet.data import (
    Cityscapes,
    CocoKeypoints,
    MixedTaskDataset,
    SyntheticLayout,
    TrainTransform,
    collate_samples,
    generate_synthetic,
)
from mtl_ehrnet.data.mixed import split_batch
from mtl_ehrnet.data.scene import SceneOptions
from mtl_ehrnet.recipes import recipe_path
from mtl_ehrnet.training import GroundTruthLoss, RunConfig
from mtl_ehrnet.training.step_timer import seconds_per_step_each
from mtl_ehrnet.training.task_loss import ground_truth_loss
from teachers.train import build_teacher
from teachers.train import train as train_teacher

PathLike = Union[str, Path]
RUNS = ("pose_teacher", "seg_teacher", "pose_student_gt", "seg_student_gt", "joint_student_gt", "joint_student_kd")
# Estimates for --minutes, which times one step of each model before training: a run's wall time (its
# validations, loader start-up, logging and checkpoints) against its timed steps; a distillation step against a
# ground-truth joint step (the teachers' passes, or the cache's reads, and the KD terms); one image's
# validation (forward + grouping) against its share of a training step.
REAL_STEP_FACTOR = 1.1
KD_STEP_FACTOR = {"online": 1.75, "cached": 1.25}
INFERENCE_FACTOR = 0.5
BUDGET_RESERVE = 0.95  # fraction of --minutes planned for; the rest absorbs a busier machine
TIMED_STEPS = 5  # per model, in rounds over the models (a load on the machine lasting a round is dropped)


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


def run_quickstart(out: PathLike, plan: Optional[QuickstartPlan] = None, jobs: Optional[int] = None) -> Dict[str, Path]:
    """Runs every step into ``out`` (each step resumes or is skipped when its result exists).

    Args:
        plan: the recipe (default: the shipped one, :meth:`QuickstartPlan.from_recipe`).
        jobs: runs trained at once, each in its own process with the recipe's ``threads`` (default: as many as
            this machine's cores hold, :func:`distill.quickstart_runs.default_jobs`); the numbers do not
            depend on it.
    """
    plan = QuickstartPlan.from_recipe() if plan is None else plan
    jobs = default_jobs(plan.threads) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs (--jobs) must be >= 1, got {jobs}")
    started = time.monotonic()
    out = Path(out)
    write_tree(out / "config.yaml", plan)  # the whole recipe: --recipe OUT/config.yaml runs it again
    layout = _synthetic_set(out / "data", plan)
    schedules = _schedules(out, plan, layout, jobs)
    checkpoints = train_runs(plan, out, schedules, jobs)
    if plan.pose_teacher_is_separate_student:
        checkpoints["pose_student_gt"] = checkpoints["pose_teacher"]
    rows = compare_rows({name: checkpoints[name] for name in RUNS}, layout.joint_root)
    paths = write_comparison(rows, out / "compare")
    print(markdown(rows, savings(rows)))
    print(f"quick start: {(time.monotonic() - started) / 60:.1f} min in this call")
    return paths


def run_settings(name: str, plan: QuickstartPlan, out: Path) -> Tuple[Callable[..., Any], Dict[str, Any]]:
    """The training function of run ``name`` (:data:`RUNS`) and its arguments but the run's directory, resume
    flag and schedule: the recipe's data, loss and distillation settings."""
    layout = SyntheticLayout(out / "data")
    common = dict(
        input_size=plan.input_size,
        batch_size=plan.batch_size,
        workers=plan.workers,
        seed=plan.seed,
        augmentation=plan.augmentation,
        ema_decay=plan.ema_decay,
        **plan.ground_truth,
    )
    pose = dict(coco=(layout.coco_annotations("train"), layout.coco_images("train")),
                coco_val=(layout.coco_annotations("val"), layout.coco_images("val")), **common)
    seg = dict(cityscapes=layout.cityscapes_root, **common)
    if plan.seg_optimizer == "adam":
        seg.update(optimizer="adam", lr=1e-3, weight_decay=1e-4)
    if name in ("pose_teacher", "seg_teacher"):
        task = name.split("_")[0]
        model = plan.pose_teacher if task == "pose" else plan.seg_teacher
        return partial(train_teacher, task, model), pose if task == "pose" else seg
    if name in ("pose_student_gt", "seg_student_gt"):
        task = name.split("_")[0]
        return partial(train_teacher, task, plan.separate_student(task)), pose if task == "pose" else seg
    joint = dict(
        coco=pose["coco"],
        cityscapes=layout.cityscapes_root,
        joint_val=layout.joint_root,
        task_ratios=tuple(plan.task_ratios),
        task_weights=tuple(plan.task_weights),
        **common,
    )
    if plan.student_init == "pose_teacher":
        joint.update(init_weights=result_path(out, "pose_teacher"), init_lr_factor=plan.init_lr_factor)
    if name == "joint_student_kd":
        joint.update(
            pose_teacher=result_path(out, "pose_teacher"),
            seg_teacher=result_path(out, "seg_teacher"),
            cache=out / "cache" if plan.teacher_cache else None,
            cache_input_size=list(plan.cache_sizes),
            cache_mirrored=plan.cache_mirrored,
            cache_blend=plan.cache_blend,
            settings=plan.kd_settings,
            # A run of one thread: the teachers answer in a second thread, on a core the run would leave idle.
            concurrent_teachers=plan.threads == 1,
        )
    elif name != "joint_student_gt":
        raise ValueError(f"unknown quick-start run {name!r}; runs: {', '.join(RUNS)}")
    return partial(train_student, plan.student), joint


def run_quickstart_seeds(out: PathLike, plan: QuickstartPlan, seeds: Sequence[int],
                         jobs: Optional[int] = None) -> Dict[str, Path]:
    """The quick start once per seed, one after another, into ``out/seed<N>/``; then each row's mean and spread
    over the seeds in ``out/compare_seeds.{json,md}``, and whether the distilled joint student beat the
    ground-truth one on each seed."""
    out = Path(out)
    per_seed = {}
    for seed in seeds:
        paths = run_quickstart(out / f"seed{seed}", replace(plan, seed=seed), jobs)
        per_seed[seed] = json.loads(paths["json"].read_text())
    paths = write_seed_spread(per_seed, out)
    print(paths["markdown"].read_text())
    return paths


def _synthetic_set(data: Path, plan: QuickstartPlan) -> SyntheticLayout:
    stamp = data / "generated.json"
    wanted = json.dumps(
        {"images": plan.images, "seed": plan.seed, "size": list(plan.image_size), "scene": asdict(plan.scene)}
    )
    if stamp.is_file() and stamp.read_text() == wanted:
        return SyntheticLayout(data)
    # The stamp is written only after a complete generation, so an interrupted one is redone.
    layout = generate_synthetic(
        data, images=plan.images, seed=plan.seed, size=plan.image_size, progress=True, scene_options=plan.scene
    )
    stamp.write_text(wanted)
    return layout


def _timing_batches(dataset, batch_size: int, workers: int, seed: int) -> Iterator[Dict[str, torch.Tensor]]:  # noqa: ANN001
    """Training batches for the step timer, pass after pass: a small set (``--images``) holds fewer batches
    than the timer's rounds take."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate_samples,
        generator=torch.Generator().manual_seed(seed),
        drop_last=True,
    )
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training samples cannot fill one batch of {batch_size}: raise --images")
    while True:
        yield from loader


def _schedules(out: Path, plan: QuickstartPlan, layout: SyntheticLayout, jobs: int = 1) -> Dict[str, StageSchedule]:
    """Each run's schedule from the recipe's steps, scaled to ``plan.minutes`` where they would not fit with
    ``jobs`` runs at once; written to ``plan.json`` once, so that a resumed quick start keeps the schedules it
    started with."""
    path = out / "plan.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if "steps" in saved:
            return {name: StageSchedule(**s) for name, s in saved["schedules"].items()}
    augment = TrainTransform((plan.input_size, plan.input_size), **plan.augmentation)
    pose_set = CocoKeypoints(layout.coco_images("train"), layout.coco_annotations("train"), augment, skip_empty=True)
    seg_set = Cityscapes(layout.cityscapes_root, "train", augment)
    data = {"pose": pose_set, "seg": seg_set, "joint": MixedTaskDataset([pose_set, seg_set])}
    steps = {name: plan.steps[name] for name in plan.runs}
    details: Dict[str, Any] = {"minutes": plan.minutes, "scale": 1.0}
    if plan.minutes is not None:
        with torch_threads(plan.threads):
            step_seconds, fixed = _timed_steps(plan, data, layout)
        wall = partial(schedule_seconds, needs=run_needs(plan), jobs=jobs)
        needed = wall({n: steps[n] * step_seconds[n] for n in steps}) + fixed
        scale = fitting_scale(steps, step_seconds, BUDGET_RESERVE * plan.minutes * 60 - fixed, wall)
        details.update(scale=scale, seconds_per_step=step_seconds, projected_minutes=needed / 60, jobs=jobs)
        if scale < 1:
            steps = scaled_steps(steps, scale, plan.validations)
            print(f"quick start: the recipe's steps need about {needed / 60:.0f} minutes here; every run's steps are "
                  f"scaled by {scale:.2f} to fit {plan.minutes:g} minutes, so the numbers differ from the recipe's")
        else:
            print(f"quick start: the recipe's steps need about {needed / 60:.0f} of the {plan.minutes:g} minutes here")
    full = {name: max(1, len(data["joint" if "joint" in name else name.split("_")[0]]) // plan.batch_size)
            for name in steps}
    schedules = {name: schedule_for_steps(n, full[name], plan.validations) for name, n in steps.items()}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**details, "steps": steps, "schedules": {n: asdict(s) for n, s in schedules.items()}},
                               indent=2))
    return schedules


def _timed_steps(plan: QuickstartPlan, data: Mapping[str, Any],
                 layout: SyntheticLayout) -> Tuple[Dict[str, float], float]:
    """Seconds per step of each run on this machine (a real loader's batches, :data:`REAL_STEP_FACTOR`), and the
    seconds of the fixed work: the teacher cache and the final comparison."""
    b = plan.batch_size
    models = {
        "pose_teacher": ("pose", build_teacher("pose", plan.pose_teacher, plan.input_size)),
        "seg_teacher": ("seg", build_teacher("seg", plan.seg_teacher, plan.input_size)),
        "pose_student_gt": ("pose", create_model(plan.separate_student("pose"), input_size=plan.input_size)),
        "seg_student_gt": ("seg", create_model(plan.separate_student("seg"), input_size=plan.input_size)),
        "joint_student_gt": ("joint", create_model(plan.student, input_size=plan.input_size)),
    }
    models = {name: job for name, job in models.items() if name in plan.runs}
    step = seconds_per_step_each(
        {
            name: (
                model,
                GroundTruthLoss(("pose", "seg") if kind == "joint" else (kind,)),
                _timing_batches(data[kind], b, plan.workers, plan.seed),
            )
            for name, (kind, model) in models.items()
        },
        steps=TIMED_STEPS,
    )
    step = {name: REAL_STEP_FACTOR * seconds for name, seconds in step.items()}
    step["joint_student_kd"] = KD_STEP_FACTOR["cached" if plan.teacher_cache else "online"] * step["joint_student_gt"]
    per_image = {name: INFERENCE_FACTOR * s / b for name, s in step.items()}
    joint_images = len(CocoKeypoints(layout.coco_images("val"), layout.coco_annotations("val")))
    fixed = (
        plan.cache_passes
        * (per_image["pose_teacher"] * len(data["pose"]) + per_image["seg_teacher"] * len(data["seg"]))
        + sum(per_image.get(name, per_image["pose_teacher"]) * 2 * joint_images + 5.0 for name in RUNS)
    )
    return step, fixed
