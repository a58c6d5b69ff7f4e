"""``mtl-ehrnet info``: every registered model's task, input size, params and MACs."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

from mtl_ehrnet import list_classifiers, list_models


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "info",
        help="list the models with params and MACs at native input",
        description="Params and true MACs (torch.utils.flop_counter) of every registered model at its native "
        "input, the thesis's printed figures beside the pose presets, the joint model's saving, and the compact "
        "EfficientNet classifiers (efficientnet_b<phi>) beside thesis Table 4.1.",
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
    from evaluation.model_table import classifier_rows, model_rows, sharing_rows

    if args.backbone:
        names, classifiers = [f"{prefix}_h{args.phi}" for prefix in ("pose", "seg", "mtl")], []
    else:
        names, classifiers = list_models(args.models), list_classifiers(args.models)
    if not names and not classifiers:
        raise ValueError(f"no model matches {args.models!r}; models: {', '.join(list_models() + list_classifiers())}")
    rows = model_rows(names, backbone=args.backbone) if names else []
    sharing = sharing_rows(rows)
    classifier_table = classifier_rows(classifiers)
    if args.json:
        text = json.dumps({"models": rows, "sharing": sharing, "classifiers": classifier_table}, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
    if args.json != "-":
        if args.backbone:
            print(f"Backbone {args.backbone} (random init) under the EfficientHRNet H{args.phi} body and heads:")
        if rows:
            print(format_models(rows))
        if sharing:
            print()
            print(format_sharing(sharing))
        if classifier_table:
            if rows:
                print()
            print(format_classifiers(classifier_table))
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
            f"{_fmt(r['macs'], 1e9, 'G')} | {_fmt(r['thesis_params'], 1e6, 'M')} | "
            f"{_fmt(r['thesis_flops'], 1e9, 'G')} |"
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


def format_classifiers(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of :func:`evaluation.model_table.classifier_rows` beside thesis Table 4.1."""
    lines = [
        "Compact EfficientNet classifiers (thesis 4.1): true counts, Table 4.1's printed figures in brackets",
        "| model | input (formula) | params, 1000 classes | params, 100 classes | MACs "
        "| thesis top-1 ImageNet / CIFAR-100 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["thesis"]
        size = str(r["input_size"])
        if r["formula_input_size"] != r["input_size"]:
            size += f" ({r['formula_input_size']})"
        imagenet, cifar, macs = (f"{r['params_1000'] / 1e6:.2f} M", f"{r['params_100'] / 1e6:.2f} M",
                                 f"{r['macs'] / 1e9:.3f} G")
        accuracy = "-"
        if t:
            imagenet += f" [{t['imagenet_params'] / 1e6:g} M]"
            cifar += f" [{t['cifar_params'] / 1e6:g} M]"
            macs += f" [{t['imagenet_flops'] / 1e9:g} B]"
            accuracy = f"{t['imagenet_top1']:g} / {t['cifar_top1']:g} %"
        lines.append(f"| {r['name']} | {size} | {imagenet} | {cifar} | {macs} | {accuracy} |")
    lines.append(
        "\nInput: Table 4.1's size, with ceil(224 * 1.15**phi) in parentheses where it differs. MACs at that input "
        "(Table 4.1's 'FLOPS' are multiply-adds). The thesis's B-4 ImageNet 1.3 M repeats its CIFAR-100 figure: "
        "with 1000 classes B-4 has 2.05 M, with 100 classes 1.27 M. phi > 0 follows the same compound rule "
        "(not the published B1/B2 coefficients)."
    )
    return "\n".join(lines)
