"""End-to-end latency through ``Predictor`` (resize, network, grouping, full-resolution class map), every model
on every path, against fp32 eager PyTorch without channels-last (always the first path), with the network's
share apart and the joint model's total over the pose-only plus the seg-only model's.

    python tools/bench_predictor.py --models mtl_h0,pose_h0,seg_h0 --input-size 512 --paths auto
    python tools/bench_predictor.py --models QS/runs/joint_student_kd/student.pt --val QS/data/joint --limit 16
    python tools/bench_predictor.py --models mtl_h0 --input-size 512 --paths fp32:torch,bf16:torch --unfolded
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from evaluation.predictor_latency import format_timings, time_predictors


def _images(args: argparse.Namespace) -> List[np.ndarray]:
    from mtl_ehrnet.data.cityscapes import list_cityscapes_pairs
    from mtl_ehrnet.data.image_io import read_rgb

    if args.val:
        return [read_rgb(image) for image, _ in list_cityscapes_pairs(Path(args.val), "val")[: args.limit]]
    if args.images:
        return [read_rgb(p) for p in args.images]
    side = args.input_size or 512
    return [np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)]


def _paths(spec: str, device: str, unfolded: bool = False) -> list:
    """The baseline, then each ``precision:backend`` of ``spec``; with ``unfolded``, each PyTorch path is
    followed by its twin with the batch norms left unfolded (what folding gains, in one run)."""
    from mtl_ehrnet.inference.deployment import baseline_path, choose_path

    baseline = baseline_path(device)
    chosen = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        precision, _, backend = item.partition(":")
        path = choose_path(precision, backend or ("auto" if precision == "auto" else "torch"), device)
        chosen.append(path)
        if unfolded and path.backend.startswith("torch"):
            chosen.append(replace(path, fold_batchnorm=False))
    return [baseline] + [p for p in dict.fromkeys(chosen) if p != baseline]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/bench_predictor.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mtl_h0,pose_h0,seg_h0",
                        help="comma-separated model names (random weights) or checkpoint files")
    parser.add_argument("--paths", default="auto",
                        help="precision:backend pairs or auto, comma-separated (fp32 eager NCHW is always first)")
    parser.add_argument("--input-size", type=int, default=None, help="network short side (default each model's own)")
    parser.add_argument("--val", metavar="ROOT", help="time on the val images of a joint / Cityscapes-layout split")
    parser.add_argument("--limit", type=int, default=8, help="with --val: the first N images (default 8)")
    parser.add_argument("images", nargs="*", help="image files (default: one random image of the input size)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads (default unchanged)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--unfolded", action="store_true",
                        help="also time each PyTorch path with its batch norms unfolded")
    args = parser.parse_args(argv)
    from mtl_ehrnet.inference.machine import this_machine

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {this_machine().describe()}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rows = time_predictors(models, _paths(args.paths, args.device, args.unfolded), _images(args),
                           input_size=args.input_size, runs=args.runs, warmup=args.warmup, threads=args.threads,
                           device=args.device)
    print(format_timings(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
