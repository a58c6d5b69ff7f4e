"""``mtl-ehrnet distill``: train the multi-task student from standalone teachers."""
from __future__ import annotations

import argparse

from mtl_ehrnet.training.run_flags import add_config_flags, config_from_args, config_override

# Everyday flags and the config key each sets; every other setting is reached with --set or the YAML.
FLAG_KEYS = {
    "student": "student",
    "pose_teacher": "teachers.pose",
    "seg_teacher": "teachers.seg",
    "coco": "data.coco",
    "cityscapes": "data.cityscapes",
    "joint_val": "data.joint_val",
    "cache": "teachers.cache",
    "epochs": "run.epochs",
    "batch_size": "run.batch_size",
    "lr": "run.lr",
    "device": "run.device",
}


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "distill",
        help="train a multi-task student on pose + segmentation data with frozen teachers",
        description="Each COCO image uses its keypoint labels, each Cityscapes image its segmentation labels, "
        "and the frozen teachers supply the task it lacks (and, weighted, the one it has). Without teachers "
        "this trains the ground-truth-only joint baseline. Writes OUT/student.pt (no teacher weights) and "
        "OUT/config.yaml (every setting; --config OUT/config.yaml trains the same run again). Settings: the "
        "config's defaults, then --config, then the flags typed here; docs/distillation.md lists every key.",
    )
    add_run_flags(p)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt where it stopped")
    p.set_defaults(func=run)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags that describe a distillation run (all but its output), shared by ``distill`` and
    ``record-answers``."""
    add_config_flags(p, "--set kd.temperature=2 --set run.workers=4")
    p.add_argument("--student", help="multi-task model, e.g. mtl_h-4")
    p.add_argument("--pose-teacher", metavar="CKPT", help="pose teacher checkpoint (train-teacher pose)")
    p.add_argument("--seg-teacher", metavar="CKPT", help="segmentation teacher checkpoint (train-teacher seg)")
    p.add_argument("--coco", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"), help="pose training set")
    p.add_argument("--cityscapes", metavar="ROOT", help="segmentation training set (train split)")
    p.add_argument("--joint-val", metavar="ROOT",
                   help="split labelled for both tasks (synth's joint/), validated each epoch")
    p.add_argument("--cache", metavar="DIR", help="teacher-output cache: the teachers run once per image")
    p.add_argument("--epochs", type=int, help="default 300")
    p.add_argument("--batch-size", type=int, help="images per step per process")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")


def register_record_answers(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "record-answers",
        help="record teachers' answers to a distillation run's batches ahead of the run",
        description="Walks the batches the distill run described by the same flags (or --config) will train on and "
        "stores each answer of the teachers --tasks names into OUT, without training. The run, given the same "
        "settings, torch threads and --set teachers.recorded_answers=OUT, reads them instead of running those "
        "teachers: the same maps to the bit, while another core or machine did the teachers' work. Re-running "
        "continues an interrupted recording.",
    )
    add_run_flags(p)
    p.add_argument("--out", required=True, help="the recording's directory")
    p.add_argument("--tasks", default=None, metavar="LIST",
                   help="teachers to record, comma-separated: pose, seg (default: every teacher given)")
    p.set_defaults(func=record_answers)


def distill_config(args: argparse.Namespace):  # noqa: ANN201 - a DistillConfig
    """The run's settings: the defaults, the ``--config`` YAML over them, then the flags typed (``--set`` last)."""
    from distill.config import DistillConfig

    config = config_from_args(DistillConfig, args, FLAG_KEYS)
    config.check_complete()
    return config.resolved()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from distill.student import train_student
    from mtl_ehrnet.config_tree import write_tree

    config = distill_config(args)
    path = write_tree(Path(args.out) / "config.yaml", config)
    result = train_student(
        config.student, args.out, coco=config.data.coco, cityscapes=config.data.cityscapes,
        pose_teacher=config.teachers.pose, seg_teacher=config.teachers.seg, joint_val=config.data.joint_val,
        cache=config.teachers.cache, input_size=config.data.input_size, init_weights=config.init.weights,
        task_weights=config.loss.task_weights, init_lr_factor=config.init.lr_factor,
        cache_input_size=config.teachers.cache_input_size, cache_mirrored=config.teachers.cache_mirrored,
        cache_blend=config.teachers.cache_blend, settings=config.kd, resume=args.resume,
        augmentation=config.data.augmentation.options(), ae_weight=config.loss.ae_weight,
        ae_push=config.loss.ae_push, class_weights=config.loss.class_weights, ohem=config.loss.ohem,
        run=config.run_config(), recorded_answers=config.teachers.recorded_answers,
        concurrent_teachers=config.teachers.concurrent,
    )
    print(f"student: {result.out_dir / 'student.pt'} (settings: {path})")
    return 0


def record_answers(args: argparse.Namespace) -> int:
    """Records the answers of the teachers ``--tasks`` names (default every one given) to the batches of the run
    the flags describe, into ``--out``."""
    from distill.record_answers import record_teacher_answers

    config = distill_config(args)
    given = {task: path for task, path in (("pose", config.teachers.pose), ("seg", config.teachers.seg)) if path}
    tasks = list(given) if args.tasks is None else [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or any(t not in ("pose", "seg") for t in tasks):
        raise ValueError(f"--tasks takes pose and/or seg, got {args.tasks!r}" if args.tasks is not None
                         else "no teacher to record: give --pose-teacher and/or --seg-teacher")
    missing = [t for t in tasks if t not in given]
    if missing:
        raise ValueError(f"no {missing[0]} teacher to record: give --{missing[0]}-teacher CKPT")
    if config.teachers.cache is not None or config.teachers.recorded_answers is not None:
        raise ValueError("this run reads its teachers from a cache or a recording already (teachers.cache, "
                         "teachers.recorded_answers): nothing to record")
    record_teacher_answers(
        {task: given[task] for task in tasks}, config.student, args.out, coco=config.data.coco,
        cityscapes=config.data.cityscapes, input_size=config.data.input_size,
        augmentation=config.data.augmentation.options(), teacher_flip=config.kd.teacher_flip,
        concurrent_teachers=config.teachers.concurrent, run=config.run_config(),
    )
    return 0


def register_quickstart(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="synthetic data -> teachers -> students -> joint-vs-separate table, all on this machine",
        description="Generates the synthetic set, trains the pose and segmentation teachers, the ground-truth-only "
        "pose, segmentation and joint students and the distilled joint student for the recipe's fixed steps, and "
        "writes OUT/compare/. Re-running continues where it stopped.",
    )
    p.add_argument("--out", default="quickstart", help="output directory (default: ./quickstart)")
    p.add_argument("--recipe", metavar="YAML",
                   help="the recipe: a file (a quick start's OUT/config.yaml, your own) or a shipped recipe's name "
                        "(default: quickstart; mtl-ehrnet recipes)")
    p.add_argument("--set", action="append", default=[], type=config_override, metavar="KEY=VALUE", dest="changes",
                   help="change one recipe setting (VALUE read as YAML), e.g. --set labelled_kd_weight=0.5; repeatable")
    p.add_argument("--minutes", type=float,
                   help="scale every run's steps down alike where the recipe would not fit M minutes on this machine "
                   "(default: the recipe's steps, the same on every machine)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the synthetic set, every model's initialisation and every data order (default 0)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="run the quick start once per seed (OUT/seed<N>/) and report each row's mean and spread")
    p.add_argument("--images", type=int, help="synthetic images per task set (default: the recipe's)")
    p.add_argument("--workers", type=int, help="data-loading worker processes (default: the recipe's)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="runs trained at once, each in its own process with the recipe's threads (default: as many as "
                   "this machine's cores hold); the numbers do not depend on it")
    p.set_defaults(func=run_quickstart_command)


def _plan(args: argparse.Namespace):  # noqa: ANN202 - a QuickstartPlan
    from distill.quickstart import QuickstartPlan

    changes = dict(args.changes)
    for key in ("minutes", "seed", "images", "workers"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    try:
        return QuickstartPlan.from_recipe(args.recipe, **changes)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"mtl-ehrnet quickstart: {error}") from None


def run_quickstart_command(args: argparse.Namespace) -> int:
    from distill.quickstart import run_quickstart, run_quickstart_seeds

    plan = _plan(args)
    if args.jobs is not None and args.jobs < 1:
        raise SystemExit(f"mtl-ehrnet quickstart: --jobs must be >= 1, got {args.jobs}")
    if args.seeds:
        paths = run_quickstart_seeds(args.out, plan, args.seeds, args.jobs)
    else:
        paths = run_quickstart(args.out, plan, args.jobs)
    print(f"wrote {paths['markdown']}" + (f" and {paths['plot']}" if "plot" in paths else ""))
    return 0
