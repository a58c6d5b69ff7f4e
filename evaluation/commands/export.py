"""``mtl-ehrnet export``: a checkpoint (or a model name, random weights) to ONNX, with the parity check."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX and check it against PyTorch",
        description="Exports to ONNX (opset 17, one named output per head: heatmaps, heatmaps_lr, tags, seg), "
        "checks the graph with onnx.checker and runs it once through ONNX Runtime against PyTorch "
        "(max abs difference; <= 1e-4 expected in fp32). For TensorRT (Jetson): "
        "trtexec --onnx=OUT.onnx --saveEngine=OUT.engine --fp16",
    )
    parser.add_argument("model", metavar="CHECKPOINT|MODEL_NAME",
                        help="checkpoint file, or a model name (random weights)")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="where to write the graph")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="input height and width, multiples of 32 (default: the model's)")
    parser.add_argument("--dynamic-batch", action="store_true", help="leave the batch axis free")
    parser.add_argument("--dynamic-size", action="store_true", help="leave height and width free too")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evaluation.model_source import describe_source, load_model_or_name
    from mtl_ehrnet.inference.onnx_export import PARITY_TOLERANCE, RELATIVE_TOLERANCE, export_onnx

    loaded = load_model_or_name(args.model, "cpu")
    print(describe_source(loaded))
    report = export_onnx(loaded.model, args.onnx, tuple(args.input_size) if args.input_size else None,
                         args.dynamic_batch, dynamic_size=args.dynamic_size, opset=args.opset)
    report["model"] = loaded.source
    report["random_weights"] = loaded.random_weights
    print(f"wrote {report['path']} ({report['bytes'] / 1e6:.1f} MB, opset {report['opset']}, "
          f"input {report['input_size'][0]}x{report['input_size'][1]}, {report['export_s']:.1f} s); "
          "onnx.checker passed")
    print("| output | shape | max abs diff vs PyTorch | max abs PyTorch value |")
    print("|---|---|---|---|")
    for name, shape in report["outputs"].items():
        print(f"| {name} | {'x'.join(map(str, shape))} | {report['max_abs_diff'][name]:.2e} | "
              f"{report['reference_max_abs'][name]:.2e} |")
    verdict = "OK" if report["parity_ok"] else "FAILED"
    print(f"parity {verdict}: max abs diff {report['max_abs_diff_all']:.2e}, relative {report['max_rel_diff_all']:.1e} "
          f"(tolerance {PARITY_TOLERANCE:g}, or {RELATIVE_TOLERANCE:g} of an output's max abs value above 10; "
          f"ONNX Runtime {', '.join(report['providers'])})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["parity_ok"] else 3
