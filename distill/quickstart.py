"""The whole story on the built-in synthetic data: generate it, train both teachers, the three
ground-truth-only students and the distilled joint student, then compare them in one table.

With a time budget (``minutes``) every run's step is timed first, the budget is shared between the runs,
and it is shared again before each run from the time really left (:mod:`distill.quickstart_schedule`);
without one, the plan's fixed epochs are used.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader

from distill.quickstart_plan import RUNS, PathLike, QuickstartPlan
from distill.quickstart_runs import (
    ANSWERS_RUN,
    default_jobs,
    records_answers,
    result_path,
    run_needs,
    schedule_seconds,
    torch_threads,
    train_runs,
)
from distill.quickstart_schedule import StageSchedule, fitting_scale, scaled_steps, schedule_for_steps
from distill.record_answers import record_teacher_answers
from distill.student import train_student
from evaluation.compare import compare_rows, markdown, savings, write_comparison, write_seed_spread
from mtl_ehrnet import create_model
from mtl_ehrnet.config_tree import write_tree
from mtl_ehrnet.data import (
    Cityscapes,
    CocoKeypoints,
    MixedTaskDataset,
    SyntheticLayout,
    TrainTransform,
    collate_samples,
    generate_synthetic,
)
from mtl_ehrnet.training import GroundTruthLoss
from mtl_ehrnet.training.step_timer import seconds_per_step_each
from teachers.train import build_teacher
from teachers.train import train as train_teacher

# Estimates for --minutes, which times one step of each model before training: a run's wall time (its
# validations, loader start-up, logging and checkpoints) against its timed steps; a distillation step against a
# ground-truth joint step (the teachers' passes, or the cache's reads, and the KD terms; "recorded": the pose
# teacher's pass alone, in a thread of its own, the segmentation teacher's answers read from ANSWERS_RUN: measured
# 0.93-0.96x beside the ground-truth student on 2 cores, whose CPU the thread shares; 1.1 where it has none to
# share); one image's validation (forward + grouping), or one
# batch's recorded teacher answer, against its share of a training step.
REAL_STEP_FACTOR = 1.1
KD_STEP_FACTOR = {"online": 1.75, "cached": 1.25, "recorded": 1.1}
INFERENCE_FACTOR = 0.5
BUDGET_RESERVE = 0.95  # fraction of --minutes planned for; the rest absorbs a busier machine
TIMED_STEPS = 5  # per model, in rounds over the models (a load on the machine lasting a round is dropped)


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
    checkpoints = train_runs(plan, out, schedules, run_settings, jobs)
    if plan.pose_teacher_is_separate_student:
        checkpoints["pose_student_gt"] = checkpoints["pose_teacher"]
    rows = compare_rows({name: checkpoints[name] for name in RUNS}, layout.joint_root)
    paths = write_comparison(rows, out / "compare")
    print(markdown(rows, savings(rows)))
    print(f"quick start: {(time.monotonic() - started) / 60:.1f} min in this call")
    return paths


def run_settings(name: str, plan: QuickstartPlan, out: Path) -> Tuple[Callable[..., Any], Dict[str, Any]]:
    """The training function of run ``name`` (:data:`RUNS`, or :data:`distill.quickstart_runs.ANSWERS_RUN`) and its
    arguments but the run's directory, resume flag and schedule: the recipe's data, loss and distillation settings.
    The distilled student reads the segmentation teacher's recorded answers where they were recorded."""
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
    # A run of one thread: the teachers answer in a second thread, on a core the run would leave idle.
    concurrent = plan.threads == 1
    if name == ANSWERS_RUN:
        recorded = {key: joint[key] for key in ("coco", "cityscapes", "input_size", "augmentation", "batch_size",
                                                  "workers", "seed", "ema_decay", "task_ratios")}
        return (partial(record_teacher_answers, {"seg": result_path(out, "seg_teacher")}, plan.student),
                dict(teacher_flip=plan.teacher_flip, concurrent_teachers=concurrent, **recorded))
    if plan.student_init == "pose_teacher":
        joint.update(init_weights=result_path(out, "pose_teacher"), init_lr_factor=plan.init_lr_factor)
    if name == "joint_student_kd":
        answers = result_path(out, ANSWERS_RUN)
        joint.update(
            pose_teacher=result_path(out, "pose_teacher"),
            seg_teacher=result_path(out, "seg_teacher"),
            cache=out / "cache" if plan.teacher_cache else None,
            cache_input_size=list(plan.cache_sizes),
            cache_mirrored=plan.cache_mirrored,
            cache_blend=plan.cache_blend,
            settings=plan.kd_settings,
            concurrent_teachers=concurrent,
            recorded_answers=answers.parent if answers.is_file() else None,
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
        record = records_answers(plan, jobs) and "joint_student_kd" in steps
        with torch_threads(plan.threads):
            step_seconds, fixed = _timed_steps(plan, data, layout, record)
        # The recording is planned as a run of its own: one teacher answer per batch of the distilled student.
        planned = {**steps, ANSWERS_RUN: steps["joint_student_kd"]} if record else steps
        wall = partial(schedule_seconds, needs=run_needs(plan, record), jobs=jobs)
        needed = wall({n: planned[n] * step_seconds[n] for n in planned}) + fixed
        scale = fitting_scale(planned, step_seconds, BUDGET_RESERVE * plan.minutes * 60 - fixed, wall)
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


def _timed_steps(plan: QuickstartPlan, data: Mapping[str, Any], layout: SyntheticLayout,
                 record: bool = False) -> Tuple[Dict[str, float], float]:
    """Seconds per step of each run on this machine (a real loader's batches, :data:`REAL_STEP_FACTOR`), and the
    seconds of the fixed work: the teacher cache and the final comparison. With ``record``, the distilled student
    reads the segmentation teacher's answers from :data:`ANSWERS_RUN`, whose seconds per batch are included."""
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
    teachers = "cached" if plan.teacher_cache else "recorded" if record else "online"
    step["joint_student_kd"] = KD_STEP_FACTOR[teachers] * step["joint_student_gt"]
    if record:
        step[ANSWERS_RUN] = INFERENCE_FACTOR * step["seg_teacher"]
    per_image = {name: INFERENCE_FACTOR * s / b for name, s in step.items()}
    joint_images = len(CocoKeypoints(layout.coco_images("val"), layout.coco_annotations("val")))
    fixed = (
        plan.cache_passes
        * (per_image["pose_teacher"] * len(data["pose"]) + per_image["seg_teacher"] * len(data["seg"]))
        + sum(per_image.get(name, per_image["pose_teacher"]) * 2 * joint_images + 5.0 for name in RUNS)
    )
    return step, fixed
