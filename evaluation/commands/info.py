"""``mtl-ehrnet info``: every registered model's task, input size, params and MACs."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

from mtl_ehrnet import list_models


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "info",
        help="list the models with params and MACs at native input",
        description="Params and true MACs (torch.utils.flop_counter) of every registered model at its native "
        "input, the thesis's printed figures beside the pose presets, and the joint model's saving.",
    )
    parser.add_argument("--models", default="*", help="shell pattern over model names (default: all)")
    parser.add_argument("--json", nargs="?", const="-", metavar="OUT", help="write JSON to OUT (or stdout)")
    parser.add_argument(
        "--backbone",
        metavar="SPEC",
        help="timm:NAME or torchvision:NAME: the pose, seg and mtl models of --phi on that backbone "
        "(random init, nothing downloaded) instead of the registered models",
    )
    parser.add_argument("--phi", type=int, default=0, help="HRNet body and input size with --backbone (default 0: 512)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evaluation.model_table import model_rows, sharing_rows

    if args.backbone:
        names = [f"{prefix}_h{args.phi}" for prefix in ("pose", "seg", "mtl")]
    else:
        names = list_models(args.models)
    if not names:
        raise ValueError(f"no model matches {args.models!r}; models: {', '.join(list_models())}")
    rows = model_rows(names, backbone=args.backbone)
    sharing = sharing_rows(rows)
    if args.json:
        text = json.dumps({"models": rows, "sharing": sharing}, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
    if args.json != "-":
        if args.backbone:
            print(f"Backbone {args.backbone} (random init) under the EfficientHRNet H{args.phi} body and heads:")
        print(format_models(rows))
        if sharing:
            print()
            print(format_sharing(sharing))
    return 0


def _fmt(value: Optional[float], scale: float, unit: str) -> str:
    return "-" if value is None else f"{value / scale:.2f} {unit}"


def format_models(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of :func:`evaluation.model_table.model_rows`."""
    lines = [
        "| model | tasks | input | params | MACs | thesis params* | thesis FLOPs* |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        h, w = r["input_size"]
        lines.append(
            f"| {r['name']} | {'+'.join(r['tasks'])} | {h}x{w} | {_fmt(r['params'], 1e6, 'M')} | "
            f"{_fmt(r['macs'], 1e9, 'G')} | {_fmt(r['thesis_params'], 1e6, 'M')} | {_fmt(r['thesis_flops'], 1e9, 'G')} |"
        )
    lines.append(
        "\n*thesis convention: figures printed in the thesis (Tables 4.2, 4.5), made by the reference repo's "
        "summary tool (MBConv params counted twice, transposed-conv work 4x; its 'FLOPs' are multiply-adds). "
        "params/MACs columns are true counts (torch.utils.flop_counter, MACs = FLOPs / 2)."
    )
    return "\n".join(lines)


def format_sharing(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of :func:`evaluation.model_table.sharing_rows`."""
    lines = [
        "Joint (mtl) versus separate (pose + seg) models at native input:",
        "| phi | mtl MACs | pose + seg MACs | MACs ratio | mtl params | pose + seg params | params ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['phi']} | {r['mtl_macs'] / 1e9:.2f} G | {r['separate_macs'] / 1e9:.2f} G | {r['macs_ratio']:.3f} | "
            f"{r['mtl_params'] / 1e6:.2f} M | {r['separate_params'] / 1e6:.2f} M | {r['params_ratio']:.3f} |"
        )
    return "\n".join(lines)
