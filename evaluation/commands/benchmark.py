"""``mtl-ehrnet benchmark``: params, MACs, latency and FPS of several models in one run (the thesis's
Table 4.4 columns), on PyTorch eager and/or ONNX Runtime, optionally INT8."""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

DEFAULT_MODELS = "pose_h0,seg_h0,mtl_h0,pose_h-4,seg_h-4,mtl_h-4"
BACKENDS = ("torch", "onnxruntime")


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
    parser.add_argument("--backend", nargs="+", default=["torch"], metavar="NAME",
                        help="torch and/or onnxruntime (space- or comma-separated; all in one run). onnxruntime exports "
                        "each model (fixed shape, opset 17) and uses TensorRT or CUDA when its build has them")
    parser.add_argument("--int8", action="store_true", help="also time an INT8 copy (ONNX Runtime static quantisation, QDQ)")
    parser.add_argument("--int8-val", metavar="ROOT", help="joint split (a Cityscapes-layout root with annotations/person_keypoints_val.json, "
                        "as synth's joint/): calibrate INT8 on its images and report AP / mIoU of fp32 and INT8 ONNX Runtime")
    parser.add_argument("--int8-limit", type=int, default=None, help="evaluate the first N images of --int8-val only")
    parser.add_argument("--int8-calibration", type=int, default=8, help="calibration images (default 8)")
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
                     backbones: Optional[List[str]] = None, backends: Sequence[str] = ("torch",),
                     int8: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """One row per model (and per backbone, when given) and backend: params, MACs, forward / post-processing
    latency, FPS.

    Args:
        names: registered model names (random weights) or checkpoint files.
        backends: ``"torch"`` (eager) and/or ``"onnxruntime"`` (the model exported at the same input).
        int8: when given, also an ``"onnxruntime-int8"`` row per model; keys ``calibration`` (number of
            inputs), ``val`` (joint split root or None: calibrate on its images and add AP / mIoU of the
            fp32 and INT8 graphs to the rows) and ``limit`` (val images).
    """
    from mtl_ehrnet import create_model, list_models

    from evaluation.complexity import complexity
    from evaluation.latency import measure_latency
    from evaluation.model_source import load_model_or_name

    known = set(list_models())
    unknown = [n for n in names if n not in known and not Path(n).is_file()]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; models: {', '.join(sorted(known))} (or checkpoint files)")
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise ValueError(f"unknown backend(s) {bad}; choose from {list(BACKENDS)}")
    rows = []
    for name, backbone in [(n, b) for n in names for b in (backbones or [None])]:
        if backbone:
            model = create_model(name, backbone=backbone).to(device).eval()
        else:
            model = load_model_or_name(name, device).model
        size = (input_size, input_size) if input_size else tuple(model.input_size)
        counts = complexity(model, size)
        base = {"model": f"{name} [{backbone}]" if backbone else name, "tasks": list(model.tasks), "input_size": list(size),
                "params": counts["params"], "macs": counts["macs"]}
        post = postprocess_for(model)
        with tempfile.TemporaryDirectory(prefix="mtl_ehrnet_bench_") as folder:
            runners = _runners(model, size, backends, threads, Path(folder), int8)
            for backend, runner, extra in runners:
                report = measure_latency(runner, size, warmup=warmup, runs=runs, threads=threads,
                                         device=device if backend == "torch" else "cpu", postprocess=post)
                rows.append({**base, "backend": backend, **extra, **report.as_dict()})
    return rows


def _runners(model: Any, size: Tuple[int, int], backends: Sequence[str], threads: Optional[int], folder: Path,
             int8: Optional[Dict[str, Any]]) -> List[Tuple[str, Any, Dict[str, Any]]]:
    """(backend, module to time, extra row fields) for each backend; exports and quantises into ``folder``."""
    runners: List[Tuple[str, Any, Dict[str, Any]]] = []
    if "torch" in backends:
        runners.append(("torch", model, {}))
    if "onnxruntime" not in backends and int8 is None:
        return runners
    from evaluation.export import export_onnx
    from evaluation.onnx_runtime import OnnxModel

    fp32_path = folder / "model.onnx"
    # Free batch and sides: timed at the model's input, and the val split's padded images run too (measured: no
    # latency cost against a fixed-shape graph for mtl_h-4 at 384 on this CPU).
    report = export_onnx(model, fp32_path, size, True, dynamic_size=True)
    common = {"tasks": model.tasks, "config": getattr(model, "config", None), "input_size": size, "threads": threads}
    fp32 = OnnxModel(fp32_path, **common)
    parity = {"onnx_max_abs_diff": report["max_abs_diff_all"], "onnx_max_rel_diff": report["max_rel_diff_all"],
              "onnx_parity_ok": report["parity_ok"], "providers": fp32.providers}
    if "onnxruntime" in backends:
        runners.append(("onnxruntime", fp32, parity))
    if int8 is not None:
        from evaluation.quantize import quantize_int8

        calibration, accuracy_of = _int8_inputs(size, int8)
        int8_path = folder / "model_int8.onnx"
        sizes = quantize_int8(fp32_path, int8_path, calibration)
        quantised = OnnxModel(int8_path, **common)
        extra: Dict[str, Any] = {"providers": quantised.providers, "int8_bytes": sizes["int8_bytes"], "fp32_bytes": sizes["fp32_bytes"],
                                 "calibration": int8["val"] or "random inputs (timing only)"}
        if accuracy_of is not None:
            extra["accuracy_fp32"] = accuracy_of(fp32)
            extra["accuracy_int8"] = accuracy_of(quantised)
        runners.append(("onnxruntime-int8", quantised, extra))
    return runners


def _int8_inputs(size: Tuple[int, int], int8: Dict[str, Any]) -> Tuple[List[Any], Optional[Callable[[Any], Dict[str, Any]]]]:
    """Calibration inputs, and an evaluation on the val split (None without one)."""
    from evaluation.quantize import calibration_batches, random_batches

    if not int8.get("val"):
        return random_batches(size, int8["calibration"]), None
    from mtl_ehrnet.data.cityscapes import list_cityscapes_pairs
    from mtl_ehrnet.data.image_io import read_rgb

    from evaluation.dataset_eval import evaluate_joint

    root = Path(int8["val"])
    pairs = list_cityscapes_pairs(root, "val")[: int8["calibration"]]
    calibration = list(calibration_batches((read_rgb(image) for image, _ in pairs), size))

    def accuracy_of(runner: Any) -> Dict[str, Any]:
        return evaluate_joint(runner, root, limit=int8.get("limit"), input_size=min(size))

    return calibration, accuracy_of


def format_rows(rows: List[Dict[str, Any]]) -> str:
    first = rows[0]
    lines = [
        f"device {first['device']}, {first['threads']} threads, batch 1, median (p10-p90) of {first['forward']['runs']} runs; "
        "random weights (post-processing time on trained weights differs)",
        "| model | tasks | input | params | MACs | backend | forward | post-processing | total | FPS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, p = r["forward"], r["postprocess"]
        lines.append(
            f"| {r['model']} | {'+'.join(r['tasks'])} | {r['input_size'][0]}x{r['input_size'][1]} | {r['params'] / 1e6:.2f} M | "
            f"{r['macs'] / 1e9:.2f} G | {r.get('backend', 'torch')} | {f['median_ms']:.1f} ms ({f['p10_ms']:.1f}-{f['p90_ms']:.1f}) | "
            f"{p['median_ms']:.1f} ms | {r['total_ms']:.1f} ms | {r['fps']:.2f} |"
        )
    notes = [f"{r['model']}: ONNX Runtime vs PyTorch max abs diff {r['onnx_max_abs_diff']:.1e}, relative {r['onnx_max_rel_diff']:.1e}, "
             f"parity {'OK' if r['onnx_parity_ok'] else 'FAILED'} ({', '.join(r['providers'])})" for r in rows if "onnx_max_abs_diff" in r]
    for r in rows:
        if "accuracy_int8" in r:
            notes.append(f"{r['model']} INT8 ({r['int8_bytes'] / 1e6:.1f} MB vs {r['fp32_bytes'] / 1e6:.1f} MB fp32), calibrated on "
                         f"{r['calibration']}: {_accuracy(r['accuracy_fp32'])} fp32 -> {_accuracy(r['accuracy_int8'])} INT8")
        elif "int8_bytes" in r:
            notes.append(f"{r['model']} INT8 ({r['int8_bytes'] / 1e6:.1f} MB vs {r['fp32_bytes'] / 1e6:.1f} MB fp32) calibrated on "
                         "random inputs: latency only (give --int8-val for the accuracy it costs)")
    return "\n".join(lines + ([""] + notes if notes else []))


def _accuracy(metrics: Dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None)


def _backends(values: Sequence[str]) -> List[str]:
    names = [b.strip() for v in values for b in v.split(",") if b.strip()]
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names:
        raise ValueError("--models is empty")
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()] if args.backbones else None
    int8 = {"calibration": args.int8_calibration, "val": args.int8_val, "limit": args.int8_limit} if args.int8 or args.int8_val else None
    rows = benchmark_models(names, args.input_size, args.runs, args.warmup, args.threads, device, backbones, _backends(args.backend), int8)
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
