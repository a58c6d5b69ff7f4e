"""Grouping time next to the ``pose_h0`` forward time, measured in the same run (the table of
:mod:`evaluation.bench_grouping`, also printed by ``mtl-ehrnet benchmark --grouping``).

    python tools/bench_grouping.py [--size 512] [--runs 20] [--forward-runs 5] [--threads N]
"""
from __future__ import annotations

import argparse
from typing import List, Optional

import torch

from evaluation.bench_grouping import format_table, grouping_table


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/bench_grouping.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="network input side (maps are half of it)")
    parser.add_argument("--runs", type=int, default=20, help="timed grouping runs per row")
    parser.add_argument("--forward-runs", type=int, default=5, help="timed pose_h0 forward passes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: unchanged)")
    args = parser.parse_args(argv)
    rows = grouping_table(args.size, args.runs, args.forward_runs, args.threads)
    print(format_table(rows, args.size, args.threads or torch.get_num_threads()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
