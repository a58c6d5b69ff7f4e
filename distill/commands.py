"""``mtl-ehrnet distill``: train the multi-task student from standalone teachers."""
from __future__ import annotations

import argparse
import math
from typing import Any, Dict, Tuple

from evaluation.commands.path_flags import add_path_arguments, predictor_options
from mtl_ehrnet.data.commands import add_scene_flags, scene_options
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


def register_compare(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "compare",
        help="joint versus separate: AP, mIoU, params, MACs and CPU latency of teachers and students",
        description="Scores every given checkpoint on one split labelled for both tasks and measures params, "
        "MACs and CPU latency in the same run; writes OUT/compare.json, compare.md and compare.png.",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--joint-val", required=True, metavar="ROOT", help="split labelled for both tasks (synth's joint/)")
    from distill.compare import ROW_NAMES

    for name in ROW_NAMES:
        p.add_argument(f"--{name.replace('_', '-')}", metavar="CKPT", help=f"checkpoint of the {name} row")
    p.add_argument("--latency-runs", type=int, default=5,
                   help="latency rounds: one untimed and one timed forward pass of every model per round; "
                   "each row is the median")
    p.add_argument("--threads", type=int, help="CPU threads for the latency measurement")
    add_path_arguments(p)
    p.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from distill.compare import ROW_NAMES, compare_rows, markdown, savings, write_comparison
    from mtl_ehrnet.inference.deployment import choose_path

    checkpoints = {n: getattr(args, n) for n in ROW_NAMES if getattr(args, n) is not None}
    if not checkpoints:
        raise ValueError("give at least one row checkpoint, e.g. --joint-student-kd OUT/student.pt")
    options = predictor_options(args)
    path = None  # untouched flags: fp32 eager NCHW, as the quick start's own table
    if (args.precision, args.backend) != ("fp32", "auto"):
        path = choose_path(options["precision"], options["backend"], "cpu", calibration="calibration" in options)
    rows = compare_rows(checkpoints, args.joint_val, latency_runs=args.latency_runs, threads=args.threads, path=path,
                        calibration=options.get("calibration"))
    paths = write_comparison(rows, args.out)
    print(markdown(rows, savings(rows)))
    print(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")
    return 0


def register_quickstart(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from distill.quickstart import QuickstartPlan

    defaults = QuickstartPlan()
    p = subparsers.add_parser(
        "quickstart",
        help="synthetic data -> teachers -> students -> joint-vs-separate table, all on this machine",
        description="Generates the synthetic set, trains the pose and segmentation teachers, the ground-truth-only "
        "pose, segmentation and joint students and the distilled joint student, and writes OUT/compare/. "
        "Re-running continues where it stopped.",
    )
    p.add_argument("--out", default="quickstart", help="output directory (default: ./quickstart)")
    p.add_argument("--images", type=int, default=defaults.images, help="synthetic images per task set")
    p.add_argument("--minutes", type=float, default=defaults.minutes,
                   help="wall-clock budget of the whole run: each model's step is timed and the budget shared between "
                   "the six runs (default %(default)s; 0: use --teacher-epochs / --student-epochs instead)")
    p.add_argument("--step-cap-scale", type=float, default=defaults.step_cap_scale, metavar="S",
                   help="within the budget no run trains longer than its step cap (the steps at which the recipe meets "
                   "its bars) times S, so a fast machine ends early; 0: no caps, the whole budget is shared "
                   "(default %(default)s)")
    p.add_argument("--teacher-epochs", type=int, default=defaults.teacher_epochs, help="without a budget")
    p.add_argument("--student-epochs", type=int, default=defaults.student_epochs, help="without a budget")
    p.add_argument("--input-size", type=int, default=defaults.input_size)
    p.add_argument("--student", default=defaults.student)
    p.add_argument("--pose-teacher", default=defaults.pose_teacher)
    p.add_argument("--seg-teacher", default=defaults.seg_teacher)
    p.add_argument("--workers", type=int, default=defaults.workers)
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="seeds the synthetic set, every model's initialisation and every data order "
                   "(default %(default)s)")
    p.add_argument("--task-ratios", type=float, nargs=2, default=list(defaults.task_ratios), metavar=("POSE", "SEG"),
                   help="pose and segmentation samples per joint-student batch (default %(default)s)")
    add_scene_flags(p, defaults.scene)
    add_ground_truth_flags(p, ae_weight=defaults.ae_weight, ae_push=defaults.ae_push)
    p.add_argument("--ema-decay", type=float, default=defaults.ema_decay,
                   help="every run validates and saves an exponential moving average of its weights with this decay "
                   "(default: off)")
    p.add_argument("--student-init", choices=("pose_teacher", "none"), default=defaults.student_init,
                   help="start both joint students from the pose teacher's weights, which needs a pose teacher of the "
                   "student's width (default %(default)s), or from scratch (none)")
    p.add_argument("--task-weights", type=float, nargs=2, default=list(defaults.task_weights), metavar=("POSE", "SEG"),
                   help="factor on every pose and every segmentation term of the joint students (default %(default)s)")
    p.add_argument("--labelled-kd-weight", type=float, default=defaults.labelled_kd_weight,
                   help="the distilled student's teacher weight on samples that have that task's labels "
                   "(default %(default)s)")
    p.add_argument("--init-lr-factor", type=float, default=defaults.init_lr_factor, metavar="F",
                   help="learning-rate factor of the weights the joint students take from the pose teacher "
                   "(default %(default)s)")
    p.add_argument("--pose-kd-weight", type=float, default=defaults.pose_kd_weight, metavar="W",
                   help="weight of the distilled student's heatmap term against the pose teacher (default %(default)s)")
    p.add_argument("--teacher-cache", action=argparse.BooleanOptionalAction, default=defaults.teacher_cache,
                   help="the distilled student reads cached teacher maps (OUT/cache) instead of running the teachers "
                   "on every batch (default: %(default)s)")
    p.add_argument("--cache-input-size", type=int, nargs="+", default=list(defaults.cache_input_size), metavar="S",
                   help="with --teacher-cache: the letterbox sizes it holds, as distill --cache-input-size "
                   "(default: 1.5x --input-size)")
    p.add_argument("--cache-mirrored", action="store_true", default=defaults.cache_mirrored,
                   help="with --teacher-cache: also cache each image's mirror, as distill --cache-mirrored")
    p.add_argument("--cache-blend", action="store_true", default=defaults.cache_blend,
                   help="with --teacher-cache and several sizes: mix the two sizes around each sample's scale, "
                   "as distill --cache-blend")
    p.add_argument("--teacher-flip", action=argparse.BooleanOptionalAction, default=defaults.teacher_flip,
                   help="the distilled student learns from the mean of each teacher's pass over the image and over its "
                   "mirror (default: %(default)s)")
    p.set_defaults(func=run_quickstart_command)


def _scene_fields(args: argparse.Namespace) -> Dict[str, Any]:
    scene = scene_options(args, "quickstart", crowds=False)
    return {"people": scene.people, "min_person_height": scene.min_person_height,
            "max_person_height": scene.max_person_height}


def _plan(args: argparse.Namespace):  # noqa: ANN202 - a QuickstartPlan
    from distill.quickstart import QuickstartPlan

    try:
        return QuickstartPlan(images=args.images, input_size=args.input_size, pose_teacher=args.pose_teacher,
                              seg_teacher=args.seg_teacher, student=args.student, teacher_epochs=args.teacher_epochs,
                              student_epochs=args.student_epochs, workers=args.workers, seed=args.seed,
                              minutes=args.minutes or None, task_ratios=tuple(args.task_ratios),
                              ema_decay=args.ema_decay or None, student_init=args.student_init,
                              task_weights=tuple(args.task_weights), labelled_kd_weight=args.labelled_kd_weight,
                              init_lr_factor=args.init_lr_factor, teacher_flip=args.teacher_flip,
                              pose_kd_weight=args.pose_kd_weight, teacher_cache=args.teacher_cache,
                              step_cap_scale=args.step_cap_scale, cache_input_size=tuple(args.cache_input_size),
                              cache_mirrored=args.cache_mirrored, cache_blend=args.cache_blend,
                              **_scene_fields(args), **ground_truth_options(args))
    except ValueError as error:
        raise SystemExit(f"mtl-ehrnet quickstart: {error}") from None


def run_quickstart_command(args: argparse.Namespace) -> int:
    from distill.quickstart import run_quickstart

    paths = run_quickstart(args.out, _plan(args))
    print(f"wrote {paths['markdown']} and {paths['plot']}")
    return 0
