"""ONNX export: named outputs, parity with PyTorch, the ONNX Runtime wrapper, INT8, the export command."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evaluation import export_onnx
from mtl_ehrnet import Predictor, create_model
from mtl_ehrnet.checkpoint import save_checkpoint
from mtl_ehrnet.cli import main
from mtl_ehrnet.inference.onnx_runtime import OnnxModel
from mtl_ehrnet.inference.quantize import quantize_int8, random_batches

pytest.importorskip("onnxruntime")


def _awake(model: nn.Module) -> nn.Module:
    """Random BN statistics and affines: at initialisation the outputs are ~1e-3, where an absolute
    tolerance of 1e-4 would prove nothing; after this the H-4 models' outputs are O(1)-O(10) (the deeper
    H0 body compounds them to O(1000))."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.1, generator=generator)
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model.eval()


@pytest.mark.parametrize(
    ("name", "outputs"),
    [("pose_h-4", ["heatmaps", "heatmaps_lr", "tags"]), ("seg_h-4", ["seg"]),
     ("mtl_h-4", ["heatmaps", "heatmaps_lr", "tags", "seg"])],
)
def test_parity_and_named_outputs(tmp_path: Path, name: str, outputs: list) -> None:
    model = _awake(create_model(name))
    report = export_onnx(model, tmp_path / "m.onnx", (64, 96))
    assert list(report["outputs"]) == outputs
    assert report["outputs"][outputs[0]][-2:] == ([32, 48] if name != "seg_h-4" else [16, 24])
    assert min(report["reference_max_abs"].values()) > 0.1  # the difference below is measured on real signal
    assert report["max_abs_diff_all"] <= 1e-4 and report["max_rel_diff_all"] <= 1e-5 and report["parity_ok"]
    assert not model.training  # its mode is restored (it was eval)


def test_dynamic_graph_runs_any_batch_and_size_through_the_predictor(tmp_path: Path) -> None:
    model = _awake(create_model("mtl_h-4"))
    export_onnx(model, tmp_path / "m.onnx", 64, True, dynamic_size=True)
    onnx_model = OnnxModel(tmp_path / "m.onnx", config=model.config, input_size=(64, 64), threads=1)
    assert onnx_model.tasks == ("pose", "seg") and onnx_model.providers[-1] == "CPUExecutionProvider"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (70, 100, 3), dtype=np.uint8), rng.integers(0, 255, (90, 60, 3), dtype=np.uint8)]
    ours, theirs = Predictor(onnx_model, input_size=64)(images), Predictor(model, input_size=64)(images)
    for a, b in zip(ours, theirs):
        assert a.seg.shape == b.seg.shape and (a.seg == b.seg).mean() > 0.999


def test_fixed_graph_names_the_shape_it_takes(tmp_path: Path) -> None:
    export_onnx(create_model("seg_h-4"), tmp_path / "m.onnx", 64)
    onnx_model = OnnxModel(tmp_path / "m.onnx")
    assert onnx_model.input_size == (64, 64)
    with pytest.raises(ValueError, match=r"takes images of shape \[1, 3, 64, 64\].*dynamic"):
        onnx_model(torch.zeros(1, 3, 96, 64))
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        OnnxModel(tmp_path / "nope.onnx")


def test_export_refuses_sizes_that_are_not_multiples_of_32(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="100x64 must be a multiple of 32"):
        export_onnx(create_model("pose_h-4"), tmp_path / "m.onnx", (100, 64))


class _TinySeg(nn.Module):
    """Three convs and a BN: the quantiser's work on it is the same as on a real model, in a second."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 5, 1))

    def forward(self, images: torch.Tensor) -> dict:
        return {"seg": self.body(images)}


def test_int8_graph_is_smaller_and_close_to_fp32(tmp_path: Path) -> None:
    export_onnx(_awake(_TinySeg()), tmp_path / "m.onnx", 32)
    sizes = quantize_int8(tmp_path / "m.onnx", tmp_path / "q.onnx", random_batches((32, 32), 2))
    assert sizes["int8_bytes"] < 0.5 * sizes["fp32_bytes"]  # 40k weights: 1 byte instead of 4
    image = torch.from_numpy(random_batches((32, 32), 1, seed=9)[0])
    fp32, int8 = OnnxModel(tmp_path / "m.onnx")(image)["seg"], OnnxModel(tmp_path / "q.onnx")(image)["seg"]
    assert not torch.equal(fp32, int8)  # it really is another graph
    assert np.corrcoef(fp32.flatten(), int8.flatten())[0, 1] > 0.99
    with pytest.raises(ValueError, match="at least one input"):
        quantize_int8(tmp_path / "m.onnx", tmp_path / "q.onnx", [])


def test_benchmark_times_torch_and_onnxruntime_in_one_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--models", "seg_h-4", "--input-size", "64", "--runs", "1", "--warmup", "0",
                 "--threads", "1", "--device", "cpu", "--backend", "torch", "onnxruntime", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("| seg_h-4 | seg | 64x64 | 2.93 M |" in printed and "| fp32 onnxruntime on cpu |" in printed
            and "| fp32 torch on cpu |" in printed)
    rows = json.loads(out.read_text())["models"]
    assert [r["backend"] for r in rows] == ["torch", "onnxruntime"] and rows[1]["max_abs_diff"] <= 1e-4
    assert rows[0]["macs"] == rows[1]["macs"] and rows[1]["fps"] > 0
    # Peak memory of each path, the ONNX one from its exported graph in a fresh process: at least the weights.
    assert all(r["peak_memory_mb"] >= r["params"] * 4 / 2**20 for r in rows)
    assert "peak memory: CUDA max allocated on a GPU; on a CPU the resident-set growth" in printed
    assert main(["benchmark", "--models", "seg_h-4", "--backend", "tensorflow"]) == 1
    assert "unknown backend(s) ['tensorflow']" in capsys.readouterr().err


def test_export_command_writes_graph_and_report(tmp_path: Path, capsys) -> None:
    checkpoint = save_checkpoint(tmp_path / "seg.pt", _awake(create_model("seg_h-4", num_classes=5)))
    out, report = tmp_path / "seg.onnx", tmp_path / "report.json"
    assert main(["export", str(checkpoint), "--onnx", str(out), "--input-size", "64", "96", "--dynamic-batch",
                 "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "| seg | 1x5x16x24 |" in printed and "parity OK" in printed and "onnx.checker passed" in printed
    data = json.loads(report.read_text())
    assert data["random_weights"] is False and data["dynamic_batch"] and data["max_abs_diff_all"] <= 1e-4
    assert OnnxModel(out)(torch.zeros(3, 3, 64, 96))["seg"].shape == (3, 5, 16, 24)


def test_export_command_errors(tmp_path: Path, capsys) -> None:
    assert main(["export", "pose_h-4", "--onnx", str(tmp_path / "a.onnx"), "--input-size", "100", "64"]) == 1
    assert main(["export", "runs/missing.pt", "--onnx", str(tmp_path / "b.onnx")]) == 1
    assert main(["export", "posh_h-4", "--onnx", str(tmp_path / "c.onnx")]) == 1
    errors = capsys.readouterr().err
    assert "multiple of 32" in errors and "checkpoint not found: runs/missing.pt" in errors
    assert "'posh_h-4' is neither a checkpoint file nor a model name" in errors
    assert not (tmp_path / "a.onnx").exists()
