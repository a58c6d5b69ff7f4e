"""``mtl-ehrnet distill``: train the multi-task student from standalone teachers."""
from __future__ import annotations

import argparse
import math
from typing import Any, Tuple

from mtl_ehrnet.training.run_flags import (
    add_augmentation_flags,
    add_ground_truth_flags,
    add_run_flags,
    augmentation_options,
    ground_truth_options,
    run_changes,
)


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "distill",
        help="train a multi-task student on pose + segmentation data with frozen teachers",
        description="Each COCO image uses its keypoint labels, each Cityscapes image its segmentation labels, "
        "and the frozen teachers supply the task it lacks (and, weighted, the one it has). Without teachers "
        "this trains the ground-truth-only joint baseline. Writes OUT/student.pt (no teacher weights).",
    )
    p.add_argument("--student", required=True, help="multi-task model, e.g. mtl_h-4")
    p.add_argument("--pose-teacher", metavar="CKPT", help="pose teacher checkpoint (train-teacher pose)")
    p.add_argument("--seg-teacher", metavar="CKPT", help="segmentation teacher checkpoint (train-teacher seg)")
    p.add_argument("--coco", nargs=2, required=True, metavar=("ANN_FILE", "IMAGE_DIR"), help="pose training set")
    p.add_argument("--cityscapes", required=True, metavar="ROOT", help="segmentation training set (train split)")
    p.add_argument("--joint-val", metavar="ROOT",
                   help="split labelled for both tasks (synth's joint/), validated each epoch")
    p.add_argument("--cache", metavar="DIR",
                   help="teacher-output cache (teachers run once per image); with --cache-input-size 128 160 192 224 "
                   "--cache-mirrored --cache-blend (for a 128 input) its students match online teachers' within noise, "
                   "the default one size is cheaper to build and a little behind (docs/distillation.md)")
    p.add_argument("--cache-input-size", type=int, nargs="+", metavar="S",
                   help="square letterbox the cached teachers see, a multiple of 32 "
                   "(default: 1.5x the student's input); several sizes cache every image at each, and each sample "
                   "reads the one nearest its augmented scale")
    p.add_argument("--cache-mirrored", action="store_true",
                   help="also cache each image's mirror (a second teacher pass), which mirrored samples read "
                   "instead of replaying the plain pass through a flip")
    p.add_argument("--cache-blend", action="store_true",
                   help="with several --cache-input-size sizes, each sample mixes the two whose scales bracket its own "
                   "(weights linear in log scale) instead of reading the nearest; tags stay the nearest size's")
    p.add_argument("--init-weights", metavar="CKPT",
                   help="start the student from the weights of this checkpoint that it shares by name, e.g. a pose_h-4 "
                   "model for mtl_h-4 (backbone, body, pose head); the rest keeps its initialisation")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--input-size", type=int)
    p.add_argument("--epochs", type=int, default=300)
    add_augmentation_flags(p)
    add_ground_truth_flags(p)
    add_run_flags(p)
    p.add_argument("--task-ratios", type=float, nargs=2, metavar=("POSE", "SEG"),
                   help="fixed share of pose and segmentation images in every batch "
                   "(default: in proportion to the datasets)")
    p.add_argument("--task-weights", type=float, nargs=2, default=(1.0, 1.0), metavar=("POSE", "SEG"),
                   help="factor on every pose and every segmentation term, labels and teachers alike (default 1 1); "
                   "pose terms are ~100x smaller than segmentation ones, so 1 0.01 lets pose reach the shared trunk")
    p.add_argument("--init-lr-factor", type=float, default=1.0, metavar="F",
                   help="learning-rate factor of the weights --init-weights loads; "
                   "new ones (a head the checkpoint lacks) train at --lr (default 1)")
    p.add_argument("--labelled-kd-weight", type=float, default=0.5,
                   help="teacher weight on samples that have that task's labels")
    p.add_argument("--teacher-flip", action="store_true",
                   help="teachers answer with the mean of their pass over the image and over its mirror (flip test)")
    p.add_argument("--temperature", type=float, default=1.0, help="segmentation KD temperature")
    p.add_argument("--seg-kd", default="kl", metavar="NAME",
                   help="segmentation KD loss: kl, cwd, none or a registered one (distill.register_kd_loss)")
    p.add_argument("--tag-kd", default="pseudo", metavar="NAME",
                   help="tag KD loss: pseudo, relational, none or a registered one")
    p.add_argument("--hints", action="store_true", help="feature hints from the shared trunk (online teachers)")
    p.add_argument("--balancing", choices=("fixed", "uncertainty", "dwa"), default="fixed")
    p.add_argument("--loss-weight", action="append", default=[], type=term_weight, metavar="TERM=W",
                   help="fixed weight of one loss term (--balancing fixed), e.g. pose/kd_heatmaps=4; repeatable. "
                   "Terms: pose/heatmaps, pose/heatmaps_lr, pose/pull, pose/push, seg/ce, pose/kd_heatmaps, "
                   "pose/kd_tags, seg/kd, trunk/hints")
    p.set_defaults(func=run)


def term_weight(text: str) -> Tuple[str, float]:
    """``"pose/kd_heatmaps=4"`` -> ``("pose/kd_heatmaps", 4.0)``."""
    name, sep, value = text.partition("=")
    try:
        weight = float(value)
    except ValueError:
        weight = float("nan")
    if not sep or not name or not math.isfinite(weight) or weight < 0:
        raise argparse.ArgumentTypeError(f"expected TERM=W with a finite W >= 0, e.g. pose/kd_heatmaps=4, got {text!r}")
    return name, weight


def run(args: argparse.Namespace) -> int:
    from distill.objective import KDSettings
    from distill.student import train_student

    settings = KDSettings(labelled_kd_weight=args.labelled_kd_weight, temperature=args.temperature, seg_kd=args.seg_kd,
                          tag_kd=args.tag_kd, hints=args.hints, balancing=args.balancing,
                          teacher_flip=args.teacher_flip,
                          weights=dict(args.loss_weight))
    changes = run_changes(args)
    if args.task_ratios is not None:
        changes["task_ratios"] = tuple(args.task_ratios)
    result = train_student(
        args.student, args.out, coco=args.coco, cityscapes=args.cityscapes, pose_teacher=args.pose_teacher,
        seg_teacher=args.seg_teacher, joint_val=args.joint_val, cache=args.cache, input_size=args.input_size,
        init_weights=args.init_weights, task_weights=tuple(args.task_weights), init_lr_factor=args.init_lr_factor,
        cache_input_size=args.cache_input_size, cache_mirrored=args.cache_mirrored, cache_blend=args.cache_blend,
        epochs=args.epochs, settings=settings, resume=args.resume, augmentation=augmentation_options(args),
        **ground_truth_options(args), **changes,
    )
    print(f"student: {result.out_dir / 'student.pt'}")
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
                   help="the recipe (default: the shipped quickstart recipe; `mtl-ehrnet recipes` shows its path)")
    p.add_argument("--set", action="append", default=[], type=recipe_override, metavar="KEY=VALUE", dest="changes",
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
    p.set_defaults(func=run_quickstart_command)


def recipe_override(text: str) -> Tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as YAML (``0.5``, ``[1, 0.01]``, ``null``, ``pose_h-4``)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


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
    if args.seeds:
        paths = run_quickstart_seeds(args.out, plan, args.seeds)
    else:
        paths = run_quickstart(args.out, plan)
    print(f"wrote {paths['markdown']}" + (f" and {paths['plot']}" if "plot" in paths else ""))
    return 0
