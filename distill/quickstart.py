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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import torch
from torch.utils.data import DataLoader

from distill.compare import compare_rows, markdown, savings, write_comparison
from distill.objective import KDSettings, task_weight_pair
from distill.quickstart_budget import (
    KD_STEP_FACTOR,
    ONLINE_KD_STEP_FACTOR,
    SHARES,
    STEP_CAPS,
    WARM_START_SHARES,
    QuickstartBudget,
    StageSchedule,
    with_distilled_share,
)
from distill.student import check_init_lr_factor, default_cache_size, train_student
from distill.teacher_cache import cache_sizes
from mtl_ehrnet import create_model
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
from mtl_ehrnet.training import GroundTruthLoss, RunConfig
from mtl_ehrnet.training.step_timer import seconds_per_step_each
from mtl_ehrnet.training.task_loss import ground_truth_loss
from teachers.train import build_teacher
from teachers.train import train as train_teacher

PathLike = Union[str, Path]
RUNS = ("pose_teacher", "seg_teacher", "pose_student_gt", "seg_student_gt", "joint_student_gt", "joint_student_kd")
# A run's wall time (its validations, per-epoch loader start-up, logging and checkpoints included) against
# its timed steps. Two 30-minute runs at 1.3 and 1.2 had their runs take 1160 and 1213 s against 1190 s
# planned (0.88-1.18x per run), so validations are not reserved separately; they had been, and those runs
# ended after 23.7 and 22.9 minutes.
# With the timer in rounds the runs of a 30-minute quick start took 0.92-0.98x their timed steps; 1.1 keeps
# a margin.
REAL_STEP_FACTOR = 1.1
BUDGET_RESERVE = 0.95  # fraction of the budget planned for; the rest absorbs a busier machine
TIMED_STEPS = 5  # per model, in rounds over the five models (a load on the machine lasting a round is dropped)
INFERENCE_FACTOR = 0.5  # one image's validation (forward + grouping) against its share of a training step


@dataclass(frozen=True)
class QuickstartPlan:
    """Sizes of the quick-start run (defaults fit 30 minutes on 2 CPU cores).

    The synthetic set holds one or two people per image, 0.6-0.95 of its height (``people``,
    ``min_person_height``, ``max_person_height``, no crowds), so that a few minutes of training per model
    show the comparison's shape: after 288 steps pose_h-4 reached AP 0.056 on such people and 0.009 on one
    to three people of 0.35-0.8 of the height. Its people stand almost upright (lean ~6 degrees), so
    augmentation is milder than HigherHRNet's (``max_rotation``, ``scale_range``): rotating by up to 30
    degrees spends a short run on poses the validation images never show. Segmentation runs use Adam
    (``seg_optimizer``) instead of the thesis's SGD: with the milder augmentation, seg_h-4 reached mIoU
    0.619 after 1200 steps where SGD with HigherHRNet's augmentation reached 0.500 (docs/results.md).
    The joint students draw pose and segmentation samples 1:1 (``task_ratios``). Drawing 3:1 to give pose
    more steps taught neither joint student any pose in a 30-minute run (AP 0.000, as at 1:1) and cost
    segmentation (mIoU 0.322 against 0.370 without teachers).
    Pose runs weight the associative-embedding terms 0.01 (``ae_weight``) and push with max(0, 1 - |d|)
    (``ae_push``): with HigherHRNet's exp(-d^2) the tags of short runs never leave their near-equal start,
    so every two-person image was grouped as one tangle (a 30-epoch pose_h-4 scored AP 0.54 on
    one-person val images and 0.15 on two-person ones, and 0.53 overall with the labels' tags).
    ``ema_decay`` makes every run validate and save an exponential moving average of its weights; it is
    off because the average did not help a pose run with the recipe's step schedule (a 30-minute
    ``pose_h-2`` run: AP 0.230 averaged at 0.998 against 0.250 for the trained weights).
    Both joint students start from the pose teacher's weights (``student_init``), which is why the pose
    teacher has the student's width (``pose_h-4`` for ``mtl_h-4``) and is then also the separate pose
    student: 366 steps of four pose images taught a joint student from scratch no pose at all (AP 0.000 in
    a 30-minute quick start, with a teacher or without), where the pose teacher needs several hundred steps
    of eight.
    ``task_weights`` scale every pose and every segmentation term of the joint students: heatmap MSE is
    ~0.005 where cross-entropy is ~0.5, and unweighted the shared trunk follows segmentation alone (a joint
    student started from a pose model at AP 0.26 fell to 0.004 in 60 steps; at 1 : 0.01, to 0.17, and was
    back at 0.22 after 180).
    ``labelled_kd_weight`` weights the teachers' terms on samples that have that task's labels (samples that
    lack them get 1). With the teachers and schedule of one quick start (426 steps), 1.0 gave the distilled
    student AP 0.209 / 0.208 and mIoU 0.435 / 0.435 with seeds 0 / 1, where the ground-truth student had
    0.203 / 0.194 and 0.431 / 0.431, and 0.5 (the library's default) gave 0.201 / 0.435 with seed 0.
    ``init_lr_factor`` scales the learning rate of the weights the joint students take from the pose
    teacher (their new segmentation head trains at the full rate); the quick start keeps the full rate.
    Gentler starts keep the teacher's AP from the first step, but then the ground-truth student simply
    trains the teacher's pose further, passes its teacher, and the teachers' maps hold the distilled one
    back: at 0.2 it ended at AP 0.178 against 0.193, and with 0.1 and 0.3 on two quick starts' teachers
    it was 0.004-0.005 behind. At the full rate both students first lose some pose (AP 0.217 -> 0.093 after
    101 steps in one quick start) and the teachers' maps bring the distilled one back faster: it led on
    both metrics in 5 of 6 such runs over three quick starts' teachers and two seeds (the sixth, with
    labelled KD 0.5, was 0.002 AP behind).
    ``teacher_flip`` has the distilled student learn from flip-averaged teachers
    (:class:`teachers.flip_average.FlipAveragedTeacher`; the pose teacher's AP rises from 0.182 to 0.211
    flip-tested). It is off: the student's AP moved +0.012 with one quick start's teachers at
    init_lr_factor 0.2 and -0.003 with another's at 1.0, and its cache costs two teacher passes per image.
    ``minutes`` is the wall-clock budget of the whole run; None trains every teacher for
    ``teacher_epochs`` and every student for ``student_epochs``. Within it no run takes more than its
    :data:`~distill.quickstart_budget.STEP_CAPS` steps times ``step_cap_scale`` (0: no caps, the whole
    budget is shared), so a fast machine ends early instead of training past the steps the recipe was
    measured at.
    """

    images: int = 800
    image_size: Tuple[int, int] = (160, 120)
    input_size: int = 128
    pose_teacher: str = "pose_h-4"
    seg_teacher: str = "seg_h-3"
    student: str = "mtl_h-4"
    minutes: Optional[float] = 30.0
    teacher_epochs: int = 30
    student_epochs: int = 30
    batch_size: int = 8
    workers: int = 1
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
    pose_kd_weight: float = 4.0
    teacher_cache: bool = False
    cache_input_size: Tuple[int, ...] = ()
    cache_mirrored: bool = False
    cache_blend: bool = False
    step_cap_scale: float = 1.0

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
        if not (math.isfinite(self.pose_kd_weight) and self.pose_kd_weight >= 0):
            raise ValueError(f"pose_kd_weight (--pose-kd-weight) must be finite and >= 0, got {self.pose_kd_weight}")
        self.kd_settings  # refuses a negative labelled-KD weight as early
        check_init_lr_factor(self.init_lr_factor)
        if not (math.isfinite(self.step_cap_scale) and self.step_cap_scale >= 0):
            raise ValueError(
                f"step_cap_scale (--step-cap-scale) must be finite and >= 0 (0: no caps), got {self.step_cap_scale}"
            )
        self._check_cache_options()
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

    @property
    def shares(self) -> Dict[str, float]:
        """Each training run's share of the budget."""
        table = with_distilled_share(
            WARM_START_SHARES if self.student_init == "pose_teacher" else SHARES, self.kd_step_factor
        )
        return {name: table[name] for name in self.runs}

    @property
    def max_steps(self) -> Dict[str, int]:
        """The most steps each training run takes within the budget (none with ``step_cap_scale`` 0)."""
        if self.step_cap_scale == 0:
            return {}
        return {name: max(1, round(STEP_CAPS[name] * self.step_cap_scale)) for name in self.runs}

    @property
    def kd_step_factor(self) -> float:
        """A distillation step's cost against a ground-truth joint step."""
        return KD_STEP_FACTOR if self.teacher_cache else ONLINE_KD_STEP_FACTOR

    @property
    def kd_settings(self) -> KDSettings:
        """How the distilled joint student learns from the teachers."""
        return KDSettings(
            labelled_kd_weight=self.labelled_kd_weight,
            teacher_flip=self.teacher_flip,
            weights={"pose/kd_heatmaps": self.pose_kd_weight},
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


def run_quickstart(out: PathLike, plan: QuickstartPlan = QuickstartPlan()) -> Dict[str, Path]:
    """Runs every step into ``out`` (each step resumes or is skipped when its result exists)."""
    started = time.monotonic()
    out = Path(out)
    layout = _synthetic_set(out / "data", plan)
    coco = (layout.coco_annotations("train"), layout.coco_images("train"))
    coco_val = (layout.coco_annotations("val"), layout.coco_images("val"))
    resumed_plan = (out / "plan.json").is_file()
    budget = _budget(out, plan, layout, started)
    call_base = budget.elapsed_seconds if budget is not None and resumed_plan else 0.0  # wall time of earlier calls
    common = dict(
        input_size=plan.input_size,
        batch_size=plan.batch_size,
        workers=plan.workers,
        seed=plan.seed,
        augmentation=plan.augmentation,
        ema_decay=plan.ema_decay,
        **plan.ground_truth,
    )
    runs = out / "runs"
    checkpoints: Dict[str, Path] = {}

    def schedule(name: str) -> StageSchedule:
        if budget is None:
            return StageSchedule(plan.teacher_epochs if name.endswith("teacher") else plan.student_epochs, None, 1)
        before = dict(budget.schedules)
        budget.replan(started={n for n in plan.runs if (runs / n / "last.pt").is_file()})
        budget.save(out / "plan.json", minutes=plan.minutes)
        if budget.schedules != before:
            print(
                f"quick start re-plan: the runs so far took {budget.speed_ratio:.2f}x their timed steps ("
                + ", ".join(
                    f"{n}: {s.epochs} x {s.steps_per_epoch} steps"
                    for n, s in budget.schedules.items()
                    if before.get(n) != s
                )
                + ")"
            )
        return budget.schedules[name]

    def once(name: str, train, result_file: str) -> Path:  # noqa: ANN001
        path = runs / name / result_file
        if not path.is_file():
            resume = (runs / name / "last.pt").is_file()
            s = schedule(name)
            run_started = time.monotonic()
            train(runs / name, resume, dict(epochs=s.epochs, steps_per_epoch=s.steps_per_epoch, val_every=s.val_every))
            if budget is not None:
                now = time.monotonic()
                budget.finish(name, now - run_started, call_base + now - started, resumed=resume)
                budget.save(out / "plan.json", minutes=plan.minutes)
        checkpoints[name] = path
        return path

    pose = dict(coco=coco, coco_val=coco_val, **common)
    seg = dict(cityscapes=layout.cityscapes_root, **common)
    if plan.seg_optimizer == "adam":
        seg.update(optimizer="adam", lr=1e-3, weight_decay=1e-4)
    joint = dict(
        coco=coco,
        cityscapes=layout.cityscapes_root,
        joint_val=layout.joint_root,
        task_ratios=tuple(plan.task_ratios),
        task_weights=tuple(plan.task_weights),
        **common,
    )
    once("pose_teacher", lambda d, r, s: train_teacher("pose", plan.pose_teacher, d, resume=r, **pose, **s), "best.pt")
    once("seg_teacher", lambda d, r, s: train_teacher("seg", plan.seg_teacher, d, resume=r, **seg, **s), "best.pt")
    if plan.pose_teacher_is_separate_student:
        checkpoints["pose_student_gt"] = checkpoints["pose_teacher"]
    else:
        once(
            "pose_student_gt",
            lambda d, r, s: train_teacher("pose", plan.separate_student("pose"), d, resume=r, **pose, **s),
            "best.pt",
        )
    once(
        "seg_student_gt",
        lambda d, r, s: train_teacher("seg", plan.separate_student("seg"), d, resume=r, **seg, **s),
        "best.pt",
    )
    if plan.student_init == "pose_teacher":
        joint.update(init_weights=checkpoints["pose_teacher"], init_lr_factor=plan.init_lr_factor)
    once("joint_student_gt", lambda d, r, s: train_student(plan.student, d, resume=r, **joint, **s), "student.pt")
    once(
        "joint_student_kd",
        lambda d, r, s: train_student(
            plan.student,
            d,
            pose_teacher=checkpoints["pose_teacher"],
            seg_teacher=checkpoints["seg_teacher"],
            cache=out / "cache" if plan.teacher_cache else None,
            cache_input_size=list(plan.cache_sizes),
            cache_mirrored=plan.cache_mirrored,
            cache_blend=plan.cache_blend,
            settings=plan.kd_settings,
            resume=r,
            **joint,
            **s,
        ),
        "student.pt",
    )
    rows = compare_rows(checkpoints, layout.joint_root)
    paths = write_comparison(rows, out / "compare")
    print(markdown(rows, savings(rows)))
    print(f"quick start: {(time.monotonic() - started) / 60:.1f} min in this call")
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


def _budget(out: Path, plan: QuickstartPlan, layout: SyntheticLayout, started: float) -> Optional[QuickstartBudget]:
    """None without a time budget; with one, timed on this machine once and kept in ``plan.json``."""
    if plan.minutes is None:
        return None
    path = out / "plan.json"
    if path.is_file():
        return QuickstartBudget.load(path)
    augment = TrainTransform((plan.input_size, plan.input_size), **plan.augmentation)
    pose_set = CocoKeypoints(layout.coco_images("train"), layout.coco_annotations("train"), augment, skip_empty=True)
    seg_set = Cityscapes(layout.cityscapes_root, "train", augment)
    mixed = MixedTaskDataset([pose_set, seg_set])
    b = plan.batch_size
    data = {"pose": pose_set, "seg": seg_set, "joint": mixed}
    models = {
        "pose_teacher": ("pose", build_teacher("pose", plan.pose_teacher, plan.input_size)),
        "seg_teacher": ("seg", build_teacher("seg", plan.seg_teacher, plan.input_size)),
        "pose_student_gt": ("pose", create_model(plan.separate_student("pose"), input_size=plan.input_size)),
        "seg_student_gt": ("seg", create_model(plan.separate_student("seg"), input_size=plan.input_size)),
        "joint_student_gt": ("joint", create_model(plan.student, input_size=plan.input_size)),
    }
    models = {name: job for name, job in models.items() if name in plan.runs}
    # Batches come through a DataLoader with the runs' workers, so loading and augmentation are timed with
    # the step as training pays for them (pre-built batches under-estimated real steps by 10-40 %).
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
    step["joint_student_kd"] = plan.kd_step_factor * step["joint_student_gt"]
    full = {
        name: max(1, len(mixed if "joint" in name else pose_set if name.startswith("pose") else seg_set) // b)
        for name in plan.runs
    }
    per_image = {name: INFERENCE_FACTOR * s / b for name, s in step.items()}
    joint_images = len(
        CocoKeypoints(layout.coco_images("val"), layout.coco_annotations("val"))
    )  # joint/val is as large as each val split
    fixed = (
        plan.cache_passes
        * (per_image["pose_teacher"] * len(pose_set) + per_image["seg_teacher"] * len(seg_set))  # the teacher cache
        + sum(per_image.get(name, per_image["pose_teacher"]) * 2 * joint_images + 5.0 for name in RUNS)
    )  # the comparison (a reused pose teacher is scored again)
    elapsed = time.monotonic() - started
    budget = QuickstartBudget.plan(
        BUDGET_RESERVE * plan.minutes * 60, elapsed, step, full, plan.shares, fixed, plan.max_steps
    )
    budget.save(path, minutes=plan.minutes, reserved_seconds=fixed + elapsed, train_seconds=budget.seconds_left(()))
    print(
        "quick start plan ("
        + ", ".join(f"{n}: {s.epochs} x {s.steps_per_epoch} steps" for n, s in budget.schedules.items())
        + ")"
    )
    if len(budget.capped()) == len(budget.schedules):
        end = budget.total_seconds - budget.seconds_left(budget.schedules)  # timing, runs, cache and comparison
        print(
            f"every run is at its step cap: the quick start should end after about {end / 60:.0f} "
            f"of its {plan.minutes:g} minutes (--step-cap-scale trains longer)"
        )
    return budget
