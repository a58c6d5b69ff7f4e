"""``mtl-ehrnet compare``: joint versus separate, every row scored, counted and timed in one run."""
from __future__ import annotations

import argparse

from evaluation.commands.path_flags import add_path_arguments, predictor_options


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "compare",
        help="joint versus separate: AP, mIoU, params, MACs and CPU latency of teachers and students",
        description="Scores every given checkpoint on one split labelled for both tasks and measures params, "
        "MACs and CPU latency in the same run; writes OUT/compare.json, compare.md and compare.png.",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--joint-val", required=True, metavar="ROOT", help="split labelled for both tasks (synth's joint/)")
    from evaluation.compare import ROW_NAMES

    for name in ROW_NAMES:
        p.add_argument(f"--{name.replace('_', '-')}", metavar="CKPT", help=f"checkpoint of the {name} row")
    p.add_argument("--latency-runs", type=int, default=5,
                   help="latency rounds: one untimed and one timed forward pass of every model per round; "
                   "each row is the median")
    p.add_argument("--threads", type=int, help="CPU threads for the latency measurement")
    add_path_arguments(p, tune=False)  # every row on one path, so that their latencies compare
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evaluation.compare import ROW_NAMES, compare_rows, markdown, savings, write_comparison
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
