"""``mtl-ehrnet predict``: poses and segmentation on an image, a folder of images or a video."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List

from evaluation.commands.path_flags import add_path_arguments


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "predict",
        help="overlays, COCO-format poses and class pixel counts for images or a video",
        description="Runs one model (a multi-task one does both tasks in one forward pass), or a pose model and "
        "a seg model separately (--pose-model, --seg-model), on an image, a folder of images or a video; writes "
        "the overlays (PNG per image, MP4 for a video), poses.json (COCO results, image pixels; image_id = "
        "frame index), pixel_counts.json (pixels per Cityscapes class) and prints frames per second.",
    )
    parser.add_argument("paths", nargs="+", metavar="[CHECKPOINT] INPUT",
                        help="checkpoint file or model name (random weights), then the image / folder / video; "
                        "only INPUT with --pose-model / --seg-model")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--pose-model", metavar="CHECKPOINT", help="separate pose model (checkpoint or name)")
    parser.add_argument("--seg-model", metavar="CHECKPOINT", help="separate segmentation model (checkpoint or name)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="short side fed to the network (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per forward pass")
    parser.add_argument("--flip", action="store_true", help="flip test")
    parser.add_argument("--reference-pipeline", action="store_true",
                        help="HigherHRNet's test pipeline instead of ours (docs/inference.md); image by image, slower")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    add_path_arguments(parser, default_precision="auto")
    parser.add_argument("--half", action="store_true", help="same as --precision fp16 (CUDA only)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="NCHW tensors on the PyTorch backends (default NHWC: faster)")
    parser.add_argument("--channels-last", dest="channels_last", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help="same as --backend torch.compile")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--min-score", type=float, default=0.0, help="poses below this score are not drawn")
    parser.add_argument("--no-draw", action="store_true", help="only the JSON files, no overlays")
    parser.set_defaults(func=run, channels_last=None)


def run(args: argparse.Namespace) -> int:
    import torch

    from evaluation.commands.path_flags import predictor_options, tuned_paths_line
    from evaluation.media_prediction import predict_media
    from evaluation.model_source import LoadedModel, describe_source, load_model_or_name
    from mtl_ehrnet.inference import Predictor
    from mtl_ehrnet.inference.machine import this_machine
    from mtl_ehrnet.inference.sources import FrameSource

    separate = args.pose_model or args.seg_model
    if separate and len(args.paths) != 1:
        raise ValueError("with --pose-model / --seg-model give only INPUT, not a CHECKPOINT as well")
    if not separate and len(args.paths) != 2:
        raise ValueError("give CHECKPOINT INPUT (or INPUT with --pose-model and/or --seg-model)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    source = FrameSource(args.paths[-1])  # a missing or unreadable input fails before any model is built
    loaded: List[LoadedModel] = []
    if separate:
        if args.pose_model:
            loaded.append(load_model_or_name(args.pose_model, device, role="--pose-model", needs=("pose",)))
        if args.seg_model:
            loaded.append(load_model_or_name(args.seg_model, device, role="--seg-model", needs=("seg",)))
    else:
        loaded.append(load_model_or_name(args.paths[0], device, role="CHECKPOINT"))
    for item in loaded:
        print(describe_source(item, f"{'+'.join(item.model.tasks)} model"))
    if args.half:
        args.precision = "fp16"
    if args.compile:
        args.backend = "torch.compile"
    options = predictor_options(args)
    predictors = [Predictor(item.model, input_size=args.input_size, flip=args.flip, batch_size=args.batch_size,
                            device=device, channels_last=args.channels_last,
                            mode="reference" if args.reference_pipeline else "fast", **options)
                  for item in loaded]
    print(f"path: {predictors[0].path} ({this_machine().describe()})")
    for predictor in predictors:
        print(tuned_paths_line(predictor), end="")
    try:
        result = predict_media(predictors, source, args.out, batch_size=args.batch_size, draw=not args.no_draw,
                               min_score=args.min_score)
    finally:
        source.close()
    mode = ("separate models (" + " + ".join(i.source for i in loaded) + ")" if separate
            else f"one model ({loaded[0].source})")
    print(f"{source.kind} {source.path}: {result.frames} frame(s), {mode} on {device}")
    print(f"FPS {result.fps:.2f} (predictor: resize, forward, grouping, class map; {result.model_seconds:.2f} s); "
          f"{result.wall_fps:.2f} end to end (with decoding, drawing and writing)")
    shown = result.outputs if len(result.outputs) <= 7 else result.outputs[:5] + ["..."] + result.outputs[-2:]
    for path in shown:
        print(path if path == "..." else f"wrote {path}")
    summary = {"input": str(source.path), "kind": source.kind, "frames": result.frames, "device": device,
               "models": [{"source": i.source, "tasks": list(i.model.tasks), "random_weights": i.random_weights}
                          for i in loaded],
               "separate": bool(separate), "path": str(predictors[0].path), "fps": result.fps,
               "wall_fps": result.wall_fps, "model_seconds": result.model_seconds}
    (Path(args.out) / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0
