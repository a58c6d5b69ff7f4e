"""``mtl-ehrnet benchmark``: params, MACs, latency and FPS of several models in one run (the thesis's
Table 4.4 columns), on every deployment path this machine has (precision x backend), with each path's
difference from fp32 and, given the joint val split, its AP / mIoU."""
from __future__ import annotations

import argparse
import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

DEFAULT_MODELS = "pose_h0,seg_h0,mtl_h0,pose_h-4,seg_h-4,mtl_h-4"
BACKENDS = ("torch", "torch.compile", "onnxruntime", "tensorrt")


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="params, MACs, latency and FPS per model",
        description="Builds each model (random weights), counts params and true MACs at its input, and "
        "times the forward pass and the post-processing (pose grouping, class-map argmax) separately.",
    )
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated model names (default {DEFAULT_MODELS})")
    parser.add_argument("--backbones", default=None, help="comma-separated trunks to run every model on, e.g. "
                        "efficientnet,timm:mobilenetv3_large_100 (default: each model's own)")
    parser.add_argument("--input-size", type=int, default=None, help="square input side (default: each model's own)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: unchanged)")
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda when available)")
    parser.add_argument("--grouping", action="store_true",
                        help="also print grouping time vs pose_h0 forward (planted people)")
    parser.add_argument("--backend", nargs="+", default=["torch"], metavar="NAME",
                        help="torch and/or onnxruntime (space- or comma-separated; all in one run). onnxruntime "
                        "exports each model (fixed shape, opset 17) and uses TensorRT or CUDA when its build has them")
    parser.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16", "int8", "auto"),
                        help="time this precision on each --backend (auto: the path Predictor(precision='auto') picks)")
    parser.add_argument("--paths", default=None, metavar="LIST",
                        help="deployment paths: 'all' (every path this machine has), 'auto', or precision:backend "
                        "pairs, e.g. fp32:torch,bf16:torch,int8:onnxruntime (overrides --backend / --precision)")
    parser.add_argument("--val", metavar="ROOT",
                        help="joint split (a Cityscapes-layout root with annotations/person_keypoints_val.json, "
                        "as synth's joint/): AP / mIoU per path at each model's input; INT8 calibrates on its images")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images of --val only")
    parser.add_argument("--calibration-images", type=int, default=8, help="INT8 calibration images (default 8)")
    parser.add_argument("--int8", action="store_true",
                        help="also time the INT8 path (same as adding int8:onnxruntime to --paths)")
    parser.add_argument("--int8-val", metavar="ROOT", help=argparse.SUPPRESS)
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the peak-memory measurement (on a CPU: each path once more, in a fresh process)")
    parser.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    parser.set_defaults(func=run)


def benchmark_models(names: List[str], input_size: Optional[int], runs: int, warmup: int, threads: Optional[int],
                     device: str, backbones: Optional[List[str]] = None, backends: Sequence[str] = ("torch",),
                     int8: Optional[Dict[str, Any]] = None, paths: Optional[Sequence[Any]] = None,
                     val: Optional[str] = None, val_limit: Optional[int] = None,
                     calibration: int = 8, memory: bool = True) -> List[Dict[str, Any]]:
    """One row per model (and per backbone, when given) and deployment path: params, MACs, forward /
    post-processing latency, FPS, the largest output difference from fp32 eager, peak memory, and AP / mIoU
    with ``val``.

    Args:
        names: registered model names (random weights) or checkpoint files.
        backends: fp32 paths by backend name (``"torch"``, ``"onnxruntime"``...), used when ``paths`` is None.
        int8: older form of asking for the INT8 path (keys ``calibration``, ``val``, ``limit``).
        paths: :class:`mtl_ehrnet.inference.deployment.DeploymentPath` s to time (default from ``backends``).
        val: joint split root (annotations/person_keypoints_val.json over a Cityscapes layout): AP / mIoU per
            path, and INT8 calibrated on its first ``calibration`` images (random inputs without it).
        val_limit: evaluate the first N images only.
        memory: measure each path's peak memory (:mod:`evaluation.peak_memory`; a fresh process per path
            on the CPU).
    """
    from evaluation.complexity import complexity
    from evaluation.latency import postprocess_for
    from evaluation.model_source import load_model_or_name
    from evaluation.peak_memory import NetworkSource
    from mtl_ehrnet import create_model, list_models
    from mtl_ehrnet.inference.deployment import DeploymentPath, missing_for
    from mtl_ehrnet.inference.runners import build_runner

    known = set(list_models())
    unknown = [n for n in names if n not in known and not Path(n).is_file()]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; models: {', '.join(sorted(known))} "
                         "(or checkpoint files)")
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise ValueError(f"unknown backend(s) {bad}; choose from {list(BACKENDS)}")
    if int8 is not None:
        val, val_limit, calibration = (val or int8.get("val"), val_limit or int8.get("limit"),
                                       int8.get("calibration", calibration))
    if paths is None:
        paths = [DeploymentPath("fp32", b, device, channels_last=False) for b in backends]
        paths += [DeploymentPath("int8", "onnxruntime", "cpu")] if int8 is not None else []
    for path in paths:
        missing = missing_for(path.precision, path.backend, path.device)
        if missing:
            raise ValueError(f"{path.name} on {path.device} needs {missing}")
    rows = []
    for name, backbone in [(n, b) for n in names for b in (backbones or [None])]:
        if backbone:
            model = create_model(name, backbone=backbone).to(device).eval()
        else:
            model = load_model_or_name(name, device).model
        size = (input_size, input_size) if input_size else tuple(model.input_size)
        counts = complexity(model, size)
        base = {"model": f"{name} [{backbone}]" if backbone else name, "tasks": list(model.tasks),
                "input_size": list(size), "params": counts["params"], "macs": counts["macs"]}
        post = postprocess_for(model)
        reference = _fp32_outputs(model, size)
        runners = []
        for path in paths:
            batches = _calibration(size, val, calibration) if path.precision == "int8" else None
            runners.append((path, build_runner(copy.deepcopy(model), path, size, batches, threads,
                                               keep_graph=memory and path.device == "cpu")))
        reports = _interleaved(runners, size, warmup, runs, threads, post)
        for (path, runner), report in zip(runners, reports):
            extra: Dict[str, Any] = {"backend": path.backend, "precision": path.precision, "path": str(path),
                                     "max_abs_diff": _difference(runner, reference, size)}
            if path.backend in ("onnxruntime", "tensorrt"):
                extra["providers"] = runner.session.providers
            if memory:
                extra["peak_memory_mb"] = _peak_memory_mb(runner, path, NetworkSource(name, backbone), size, threads,
                                                          post)
            if val:
                extra["accuracy"] = _accuracy_on(model, path, val, val_limit, calibration, min(size))
                extra["calibration"] = f"{calibration} images of {val}" if path.precision == "int8" else None
            rows.append({**base, **extra, **report.as_dict()})
    return rows


def _interleaved(runners: List[Tuple[Any, Any]], size: Tuple[int, int], warmup: int, runs: int, threads: Optional[int],
                 post: Callable[[Dict[str, Any]], Any]) -> List[Any]:
    """Latency of each runner, timed in rounds (one run of each per round: A B A B ...) so that a load that
    changes over the measurement shifts every path alike and their ratios hold."""
    from evaluation.latency import LatencyReport, Timing, measure_latency

    for path, runner in runners:
        measure_latency(runner, size, warmup=0, runs=max(warmup, 1), threads=threads, device=path.device)
    samples: List[List[LatencyReport]] = [[] for _ in runners]
    for _ in range(runs):
        for (path, runner), taken in zip(runners, samples):
            taken.append(measure_latency(runner, size, warmup=0, runs=1, threads=threads, device=path.device,
                                         postprocess=post))
    return [LatencyReport(forward=Timing.of([r.forward.median_ms / 1e3 for r in taken]),
                          postprocess=Timing.of([r.postprocess.median_ms / 1e3 for r in taken]),
                          batch_size=1, input_size=taken[0].input_size, device=taken[0].device,
                          threads=taken[0].threads)
            for taken in samples]


def _fp32_outputs(model: Any, size: Tuple[int, int]) -> Tuple[Any, Dict[str, Any]]:
    """A fixed random input (1, 3, H, W) and fp32 eager's outputs for it (the reference of every path)."""
    import torch

    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    device = next(model.parameters()).device
    with torch.inference_mode():
        return images, {k: v.float().cpu() for k, v in model.eval()(images.to(device)).items()}


def _difference(runner: Any, reference: Tuple[Any, Dict[str, Any]], size: Tuple[int, int]) -> float:
    """The largest |path - fp32 eager| over all outputs, relative to each output's largest magnitude."""
    import torch

    images, expected = reference
    with torch.inference_mode():
        got = runner(images)
    return max(float((got[k].cpu() - v).abs().max() / v.abs().max().clamp(min=1e-12)) for k, v in expected.items())


def _peak_memory_mb(runner: Any, path: Any, source: Any, size: Tuple[int, int], threads: Optional[int],
                    post: Callable[[Dict[str, Any]], Any]) -> Optional[float]:
    """CUDA's max allocated on a GPU; on a CPU the resident-set growth of a fresh process that loads the
    network (the exported graph for ONNX Runtime) and runs one inference."""
    import tempfile
    from dataclasses import replace

    from evaluation.peak_memory import cpu_peak_growth_mb, cuda_peak_mb

    if path.device == "cuda":
        return cuda_peak_mb(runner, size, post)
    if getattr(runner, "graph", None) is None:
        return cpu_peak_growth_mb(source, path, size, threads)
    with tempfile.TemporaryDirectory(prefix="mtl_ehrnet_memory_") as folder:
        graph = Path(folder) / "model.onnx"
        graph.write_bytes(runner.graph)
        return cpu_peak_growth_mb(replace(source, graph=str(graph)), path, size, threads)


def _calibration(size: Tuple[int, int], val: Optional[str], count: int) -> List[Any]:
    """INT8 calibration batches: the val split's first images (as inference preprocesses them), or random."""
    from mtl_ehrnet.inference.quantize import calibration_batches, random_batches

    if not val:
        return random_batches(size, count)
    from mtl_ehrnet.data.cityscapes import list_cityscapes_pairs
    from mtl_ehrnet.data.image_io import read_rgb

    return list(calibration_batches((read_rgb(image) for image, _ in list_cityscapes_pairs(Path(val), "val")[:count]),
                                    size))


def calibration_images(root: str, count: int = 8) -> List[Any]:
    """The first ``count`` images (uint8 RGB) of a joint / Cityscapes split's val images, for INT8 calibration."""
    from mtl_ehrnet.data.cityscapes import list_cityscapes_pairs
    from mtl_ehrnet.data.image_io import read_rgb

    return [read_rgb(image) for image, _ in list_cityscapes_pairs(Path(root), "val")[:count]]


def _accuracy_on(model: Any, path: Any, val: str, limit: Optional[int], calibration: int, side: int) -> Dict[str, Any]:
    from evaluation.dataset_eval import evaluate_joint

    images = calibration_images(val, calibration) if path.precision == "int8" else None
    return evaluate_joint(copy.deepcopy(model), val, limit=limit, input_size=side, device=path.device,
                          precision=path.precision, backend=path.backend, calibration=images,
                          channels_last=path.channels_last, fold_batchnorm=path.fold_batchnorm)


def format_rows(rows: List[Dict[str, Any]]) -> str:
    first = rows[0]
    lines = [
        f"device {first['device']}, {first['threads']} threads, batch 1, "
        f"median (p10-p90) of {first['forward']['runs']} runs",
        "| model | tasks | input | params | MACs | path | forward | post-processing | total | FPS | max diff vs fp32 "
        "| peak memory | AP | mIoU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, p = r["forward"], r["postprocess"]
        accuracy = r.get("accuracy") or {}
        metrics = " | ".join("-" if accuracy.get(k) is None else f"{accuracy[k]:.4f}" for k in ("AP", "mIoU"))
        peak = "-" if r.get("peak_memory_mb") is None else f"{r['peak_memory_mb']:.0f} MiB"
        lines.append(
            f"| {r['model']} | {'+'.join(r['tasks'])} | {r['input_size'][0]}x{r['input_size'][1]} | "
            f"{r['params'] / 1e6:.2f} M | {r['macs'] / 1e9:.2f} G | {r.get('path', r.get('backend'))} | "
            f"{f['median_ms']:.1f} ms ({f['p10_ms']:.1f}-{f['p90_ms']:.1f}) | "
            f"{p['median_ms']:.1f} ms | {r['total_ms']:.1f} ms | {r['fps']:.2f} | {r.get('max_abs_diff', 0):.1e} | "
            f"{peak} | {metrics} |"
        )
    notes = []
    if any(r.get("peak_memory_mb") is not None for r in rows):
        notes.append("peak memory: CUDA max allocated on a GPU; on a CPU the resident-set growth of a fresh process "
                     "that loads the network and runs one inference")
    notes += [f"{r['model']} {r['path']}: calibrated on {r['calibration']}" for r in rows if r.get("calibration")]
    return "\n".join(lines + ([""] + notes if notes else []))


def _accuracy(metrics: Dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None)


def _backends(values: Sequence[str]) -> List[str]:
    names = [b.strip() for v in values for b in v.split(",") if b.strip()]
    return list(dict.fromkeys(names))


def _paths(args: argparse.Namespace, device: str) -> List[Any]:
    """The deployment paths the flags ask for."""
    from mtl_ehrnet.inference.deployment import DeploymentPath, available_paths, baseline_path, choose_path

    if args.paths in ("all", "auto"):
        chosen = available_paths(device) if args.paths == "all" else [choose_path("auto", "auto", device)]
    elif args.paths:
        chosen = []
        for spec in (p.strip() for p in args.paths.split(",") if p.strip()):
            precision, _, backend = spec.partition(":")
            chosen.append(choose_path(precision, backend or "torch", device))
    elif args.precision:
        chosen = [choose_path(args.precision, "auto" if args.precision == "auto" else b, device)
                  for b in _backends(args.backend)]
    else:
        return None
    if args.int8 and all(p.precision != "int8" for p in chosen):
        chosen.append(DeploymentPath("int8", "onnxruntime", "cpu"))
    # fp32 eager without channels-last first: the baseline every ratio is read against.
    baseline = baseline_path(device)
    return [baseline] + [p for p in chosen if p != baseline]


def run(args: argparse.Namespace) -> int:
    import torch

    from mtl_ehrnet.inference.deployment import choose_path
    from mtl_ehrnet.inference.machine import this_machine

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names:
        raise ValueError("--models is empty")
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = this_machine()
    print(f"machine: {machine.describe()}")
    print(f"auto path: {choose_path('auto', 'auto', device, machine=machine)}")
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()] if args.backbones else None
    val = args.val or args.int8_val
    paths = _paths(args, device)
    int8 = ({"calibration": args.calibration_images, "val": val, "limit": args.limit}
            if paths is None and args.int8 else None)
    rows = benchmark_models(names, args.input_size, args.runs, args.warmup, args.threads, device, backbones,
                            _backends(args.backend), int8, paths=paths, val=val, val_limit=args.limit,
                            calibration=args.calibration_images, memory=args.memory)
    print(format_rows(rows))
    output: Dict[str, Any] = {"machine": {"cpu": machine.cpu, "flags": list(machine.relevant_flags()),
                                          "threads": machine.threads, "cuda": list(machine.cuda)}, "models": rows}
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
