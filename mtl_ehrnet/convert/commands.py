"""``mtl-ehrnet convert``: a published checkpoint -> our checkpoint, with the conversion report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from mtl_ehrnet.convert.converter import known_sources

    parser = subparsers.add_parser(
        "convert",
        help="convert a published checkpoint (EfficientHRNet, HigherHRNet, HRNet-seg, torchvision/timm EfficientNet)",
        description="Reads SRC with torch.load(weights_only=True) (a pickle that would run code is refused), "
        "detects its layout, fills our model with every tensor (conv biases before BatchNorm folded exactly, the "
        "unused stride-2 tag half dropped, training-loss buffers ignored) and writes our checkpoint, which evaluate, "
        "predict, export, benchmark, train-teacher --init-weights and distill take as it is. Prints what was mapped "
        "and ignored.",
    )
    parser.add_argument("source", metavar="SRC", help="the published .pth / .pt file")
    parser.add_argument(
        "--model",
        metavar="NAME",
        default=None,
        help="our model to fill, e.g. pose_h-4, higherhrnet_w32, hrnet_w18_small_v2_seg, efficientnet_b0 "
        "(default: the one the file's architecture is)",
    )
    parser.add_argument("--out", required=True, metavar="OUT.pt", help="where to write our checkpoint")
    parser.add_argument(
        "--source",
        dest="kind",
        default=None,
        metavar="KIND",
        help=f"the file's layout, one of {', '.join(known_sources())} (default: detected from its keys)",
    )
    parser.add_argument("--json", metavar="REPORT.json", help="also write the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtl_ehrnet.checkpoint import save_checkpoint
    from mtl_ehrnet.convert import convert_checkpoint

    model, report = convert_checkpoint(args.source, args.model, args.kind)
    params = sum(p.numel() for p in model.parameters())
    path = save_checkpoint(args.out, model, conversion=report.to_dict())
    print(report.summary())
    print(f"wrote {path} ({model.config.name}, {params / 1e6:.2f} M params)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0
