"""``mtl-ehrnet benchmark``: params, MACs, latency and FPS of several models in one run."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

DEFAULT_MODELS = "pose_h0,seg_h0,mtl_h0,pose_h-4,seg_h-4,mtl_h-4"


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="params, MACs, latency and FPS per model",
        description="Builds each model (random weights), counts params and true MACs at its input, and "
        "times the forward pass and the post-processing (pose grouping, class-map argmax) separately.",
    )
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated model names (default {DEFAULT_MODELS})")
    parser.add_argument("--backbones", default=None, help="comma-separated trunks to run every model on, e.g. "
                        "efficientnet,timm:mobilenetv3_large_100 (default: each model's own)")
    parser.add_argument("--input-size", type=int, default=None, help="square input side (default: each model's own)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: unchanged)")
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda when available)")
    parser.add_argument("--grouping", action="store_true", help="also print grouping time vs pose_h0 forward (planted people)")
    parser.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    parser.set_defaults(func=run)


def postprocess_for(model: Any) -> Callable[[Dict[str, Any]], Any]:
    """What follows the forward pass at inference: grouping of the first image and/or its class map."""
    import torch.nn.functional as F

    from mtl_ehrnet.inference import group_poses
    from mtl_ehrnet.inference.predictor import pose_maps

    def post(outputs: Dict[str, Any]) -> None:
        if "heatmaps" in outputs:
            heat, tags = pose_maps(outputs)
            group_poses(heat[0], tags[0])
        if "seg" in outputs:
            seg = outputs["seg"][:1]
            F.interpolate(seg, scale_factor=4, mode="bilinear", align_corners=False).argmax(1)

    return post


def benchmark_models(names: List[str], input_size: Optional[int], runs: int, warmup: int, threads: Optional[int], device: str,
                     backbones: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    """One row per model (and per backbone, when given): params, MACs, forward / post-processing latency, FPS."""
    from mtl_ehrnet import create_model, list_models

    from evaluation.complexity import complexity
    from evaluation.latency import measure_latency

    known = set(list_models())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; models: {', '.join(sorted(known))}")
    rows = []
    for name, backbone in [(n, b) for n in names for b in (backbones or [None])]:
        model = create_model(name, **({"backbone": backbone} if backbone else {})).to(device).eval()
        size = (input_size, input_size) if input_size else tuple(model.input_size)
        counts = complexity(model, size)
        report = measure_latency(model, size, warmup=warmup, runs=runs, threads=threads, device=device, postprocess=postprocess_for(model))
        rows.append({"model": f"{name} [{backbone}]" if backbone else name, "tasks": list(model.tasks), "input_size": list(size), "params": counts["params"],
                     "macs": counts["macs"], **report.as_dict()})
    return rows


def format_rows(rows: List[Dict[str, Any]]) -> str:
    first = rows[0]
    lines = [
        f"device {first['device']}, {first['threads']} torch threads, batch 1, median (p10-p90) of {first['forward']['runs']} runs; "
        "random weights (post-processing time on trained weights differs)",
        "| model | tasks | input | params | MACs | forward | post-processing | total | FPS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, p = r["forward"], r["postprocess"]
        lines.append(
            f"| {r['model']} | {'+'.join(r['tasks'])} | {r['input_size'][0]}x{r['input_size'][1]} | {r['params'] / 1e6:.2f} M | "
            f"{r['macs'] / 1e9:.2f} G | {f['median_ms']:.1f} ms ({f['p10_ms']:.1f}-{f['p90_ms']:.1f}) | "
            f"{p['median_ms']:.1f} ms | {r['total_ms']:.1f} ms | {r['fps']:.2f} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names:
        raise ValueError("--models is empty")
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()] if args.backbones else None
    rows = benchmark_models(names, args.input_size, args.runs, args.warmup, args.threads, device, backbones)
    print(format_rows(rows))
    output: Dict[str, Any] = {"models": rows}
    if args.grouping:
        from evaluation.bench_grouping import format_table, grouping_table

        size = args.input_size or 512
        table = grouping_table(size, runs=max(args.runs, 5), forward_runs=args.runs, threads=args.threads)
        print()
        print(format_table(table, size, args.threads or torch.get_num_threads()))
        output["grouping"] = [
            {**r, "grouping": asdict(r["grouping"]), "forward": asdict(r["forward"])} for r in table
        ]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(output, indent=2) + "\n")
    return 0
