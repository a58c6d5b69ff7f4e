"""The deployment-path flags every inference command shares (``--precision``, ``--backend``,
``--calibration``, ``--tune``), and the :class:`Predictor` options they turn into."""
from __future__ import annotations

import argparse
from typing import Any, Dict


def add_path_arguments(
    parser: argparse.ArgumentParser, *, default_precision: str = "fp32", backend: bool = True, tune: bool = True
) -> None:
    """Adds ``--precision``, ``--backend`` (unless the command has its own), ``--calibration`` and, unless
    ``tune`` is False (a command that must run every model on one path), ``--tune``."""
    # No argparse choices: the names are checked where paths are chosen (importing them here would load torch
    # for every command's --help).
    parser.add_argument("--precision", default=default_precision,
                        help="fp32, bf16 (CPU with AMX / AVX-512 BF16, or CUDA), fp16 (CUDA), int8 (ONNX Runtime, "
                        "needs --calibration) or auto: the fastest this machine supports "
                        f"(default {default_precision})")
    if backend:
        parser.add_argument("--backend", default="auto",
                            help="torch, torch.compile, onnxruntime, tensorrt (ONNX Runtime's TensorRT provider) or "
                            "auto (default: torch for an explicit precision, the fastest with --precision auto)")
    parser.add_argument("--calibration", metavar="ROOT", default=None,
                        help="split whose val images calibrate INT8 (a Cityscapes layout, e.g. synth's joint/)")
    parser.add_argument("--calibration-images", type=int, default=8, help="INT8 calibration images (default 8)")
    if tune:
        parser.add_argument("--tune", action="store_true",
                            help="time every path that --precision and --backend allow (auto: all this machine "
                            "runs) on the model at its input size and keep the fastest; a few seconds up front")


def predictor_options(args: argparse.Namespace) -> Dict[str, Any]:
    """``precision``, ``backend``, ``calibration`` and ``tune`` for :class:`mtl_ehrnet.inference.Predictor`."""
    backend = getattr(args, "backend", "auto")
    tune = getattr(args, "tune", False)
    if tune and "auto" not in (args.precision, backend):
        raise ValueError(f"--tune chooses among paths: give --precision auto or --backend auto, not "
                         f"{args.precision} on {backend} alone")
    if backend == "auto" and args.precision != "auto" and not tune:
        backend = "torch"
    options: Dict[str, Any] = {"precision": args.precision, "backend": backend}
    if tune:
        options["tune"] = True
    if args.calibration:
        from evaluation.commands.benchmark import calibration_images

        options["calibration"] = calibration_images(args.calibration, args.calibration_images)
    elif args.precision == "int8":
        raise ValueError("--precision int8 needs --calibration ROOT (images to calibrate the INT8 ranges on)")
    return options


def tuned_paths_line(predictor: Any) -> str:
    """What ``--tune`` timed, one line ending in a newline (empty when nothing was tuned): each candidate
    path's forward pass, fastest (the chosen one) first."""
    seconds = getattr(predictor, "path_seconds", {})
    if not seconds:
        return ""
    return "tuned: " + "; ".join(f"{path} {s * 1000:.1f} ms" for path, s in seconds.items()) + "\n"
