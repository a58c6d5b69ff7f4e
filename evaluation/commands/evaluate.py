"""``mtl-ehrnet evaluate``: COCO keypoint AP and/or Cityscapes mIoU of a checkpoint."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict

from evaluation.commands.path_flags import add_path_arguments

COCO_COLUMNS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="COCO keypoint AP and/or Cityscapes mIoU of a checkpoint",
        description="Runs the predictor (short side resized to the model's input, padded to 32) over a "
        "COCO keypoints set (AP through pycocotools) and/or a Cityscapes split (mIoU as the official script). "
        "--reference-pipeline --flip reproduces HigherHRNet's published single-scale test (docs/inference.md).",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="model checkpoint (mtl_ehrnet.checkpoint)")
    parser.add_argument("--coco", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"),
                        help="person_keypoints_*.json and its images")
    parser.add_argument("--cityscapes", metavar="ROOT", help="root holding leftImg8bit/ and gtFine/")
    parser.add_argument("--split", default="val", help="Cityscapes split (default val)")
    parser.add_argument("--flip", action="store_true", help="flip test")
    parser.add_argument("--scales", default="1", help="comma-separated test scales, e.g. 1,0.75,1.25")
    parser.add_argument("--input-size", type=int, default=None, help="short side fed to the network (default: model's)")
    parser.add_argument("--reference-pipeline", action="store_true",
                        help="HigherHRNet's test pipeline instead of ours: 64-aligned affine resize, maps upsampled "
                        "to the input before grouping, its parser's decisions; image by image (slower)")
    parser.add_argument("--munkres", action="store_true",
                        help="with --reference-pipeline: match joints with the munkres package as the reference does "
                        "(it breaks equal-cost ties differently from scipy; pip install \"munkres<2\")")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda when available)")
    add_path_arguments(parser, tune=False)  # one path for every metric, named in the output
    parser.add_argument("--results", metavar="OUT", help="also write the COCO results file (official format)")
    parser.add_argument("--json", metavar="OUT", help="write the metrics as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from evaluation.commands.path_flags import predictor_options
    from evaluation.dataset_eval import evaluate_cityscapes, evaluate_coco
    from mtl_ehrnet.checkpoint import load_model
    from mtl_ehrnet.data.cityscapes import CLASS_NAMES

    if not args.coco and not args.cityscapes:
        raise ValueError("give --coco ANN_FILE IMAGE_DIR and/or --cityscapes ROOT")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.checkpoint, map_location=device)
    scales = tuple(float(s) for s in args.scales.split(","))
    if args.munkres and not args.reference_pipeline:
        raise ValueError("--munkres applies to --reference-pipeline only")
    mode = "reference" if args.reference_pipeline else "fast"
    options = {"flip": args.flip, "batch_size": args.batch_size, "limit": args.limit, "scales": scales,
               "input_size": args.input_size, "device": device, "mode": mode,
               **predictor_options(args)}
    if args.munkres:
        options["grouping"] = {"assignment": "munkres"}
    metrics: Dict[str, object] = {"checkpoint": str(args.checkpoint), "flip": args.flip, "scales": list(scales),
                                  "pipeline": mode + (" (munkres)" if args.munkres else ""),
                                  "precision": options["precision"], "backend": options["backend"]}
    if args.coco:
        ann_file, image_dir = args.coco
        metrics["coco"] = evaluate_coco(model, ann_file, image_dir, results_file=args.results, **options)
        print(format_coco(metrics["coco"]))
    if args.cityscapes:
        seg = evaluate_cityscapes(model, args.cityscapes, args.split, num_classes=model.config.num_classes, **options)
        names = CLASS_NAMES if len(CLASS_NAMES) == len(seg["per_class_iou"]) else range(len(seg["per_class_iou"]))
        seg["per_class_iou"] = {str(n): v for n, v in zip(names, seg["per_class_iou"])}
        metrics["cityscapes"] = seg
        print(format_cityscapes(seg))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def format_coco(metrics: Dict[str, float]) -> str:
    """The thesis's COCO columns as a markdown table."""
    return "\n".join((
        "| " + " | ".join(COCO_COLUMNS) + " |",
        "|" + "---|" * len(COCO_COLUMNS),
        "| " + " | ".join(f"{metrics[c]:.3f}" for c in COCO_COLUMNS) + " |",
    ))


def format_cityscapes(metrics: Dict[str, object]) -> str:
    """mIoU, pixel accuracy and the per-class IoUs ('-' for classes absent from labels and predictions)."""
    classes = ", ".join(f"{name} {'-' if math.isnan(v) else f'{v:.3f}'}"
                        for name, v in metrics["per_class_iou"].items())
    return (f"| mIoU | pixel accuracy |\n|---|---|\n| {metrics['mIoU']:.4f} | {metrics['pixel_accuracy']:.4f} |\n"
            f"per class: {classes}")
