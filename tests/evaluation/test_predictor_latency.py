import importlib.util
from pathlib import Path

import numpy as np
import pytest

from evaluation.predictor_latency import format_timings, joint_against_separate, time_predictors
from mtl_ehrnet.inference.deployment import DeploymentPath, baseline_path

EAGER = baseline_path("cpu")


def test_every_model_on_every_path_with_the_network_apart() -> None:
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    paths = [EAGER, DeploymentPath("fp32", "torch", "cpu")]
    rows = time_predictors(["mtl_h-4", "pose_h-4", "seg_h-4"], paths, [image], input_size=64, runs=2, warmup=0,
                           threads=1)
    assert [(r.model, r.path) for r in rows] == [(m, str(p)) for m in ("mtl_h-4", "pose_h-4", "seg_h-4") for p in paths]
    assert all(0 < r.network.median_ms < r.total.median_ms and r.total.runs == 2 for r in rows)
    ratios = joint_against_separate(rows)
    assert set(ratios) == {str(p) for p in paths}
    by = {(r.model, r.path): r.total.median_ms for r in rows}
    assert ratios[str(EAGER)] == pytest.approx(
        by["mtl_h-4", str(EAGER)] / (by["pose_h-4", str(EAGER)] + by["seg_h-4", str(EAGER)]))
    printed = format_timings(rows)
    assert f"| mtl_h-4 | {EAGER} | " in printed and f"joint / (pose + seg), {EAGER}: " in printed
    # Without a pose-only and a seg-only model there is nothing to set the joint one against.
    assert joint_against_separate(rows[:2]) == {}
    with pytest.raises(ValueError, match="at least one image"):
        time_predictors(["pose_h-4"], paths, [])


def test_the_tool_puts_fp32_eager_first_and_resolves_auto(capsys) -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_predictor", Path(__file__).resolve().parents[2] / "tools" / "bench_predictor.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--models", "seg_h-4", "--input-size", "64", "--paths", "fp32:torch", "--runs", "1",
                      "--warmup", "0", "--threads", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| seg_h-4 |")]
    assert [line.split(" | ")[1] for line in lines] == [str(EAGER), "fp32 torch on cpu, channels-last"]
    assert tool._paths("auto", "cpu")[0] == EAGER and len(tool._paths("auto", "cpu")) == 2
    # --unfolded puts each PyTorch path's unfolded twin after it; ONNX Runtime folds by itself, so it gets none.
    paths = tool._paths("fp32:torch,fp32:onnxruntime", "cpu", unfolded=True)
    assert [(p.precision, p.backend, p.channels_last, p.fold_batchnorm) for p in paths] == [
        ("fp32", "torch", False, False), ("fp32", "torch", True, True), ("fp32", "torch", True, False),
        ("fp32", "onnxruntime", True, True)]
