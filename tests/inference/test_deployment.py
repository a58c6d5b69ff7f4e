"""Deployment paths: auto picks one that exists, a missing capability is named, every path matches fp32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_ehrnet import Predictor, create_model
from mtl_ehrnet.inference import runners
from mtl_ehrnet.inference.deployment import DeploymentPath, available_paths, choose_path, missing_for
from mtl_ehrnet.inference.machine import Machine, this_machine
from mtl_ehrnet.inference.runners import build_runner

PLAIN_CPU = Machine("old CPU", frozenset({"avx2"}), 2)
VNNI_CPU = Machine("VNNI CPU", frozenset({"avx2", "avx512f", "avx512_vnni"}), 2)
BF16_VNNI_CPU = Machine("AVX-512 BF16 CPU", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}), 2)
AMX_CPU = Machine("AMX CPU", frozenset({"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile",
                                        "amx_int8"}), 2)
# Largest output difference relative to the output's magnitude, per precision, on a random-weight model.
TOLERANCE = {"fp32": 1e-4, "bf16": 0.1, "fp16": 0.05, "int8": 0.3}


def test_auto_picks_a_path_this_machine_has() -> None:
    path = choose_path("auto", "auto", "cpu")
    assert missing_for(path.precision, path.backend, "cpu") is None
    assert path in available_paths("cpu")


def test_auto_follows_the_cpu_flags() -> None:
    assert choose_path("auto", "auto", "cpu", machine=AMX_CPU).name == "bf16:torch"
    assert choose_path("auto", "auto", "cpu", machine=PLAIN_CPU).precision == "fp32"
    assert choose_path("auto", "auto", "cpu", machine=VNNI_CPU, calibration=True).name == "int8:onnxruntime"
    # AVX-512 BF16 and VNNI without AMX: bf16 unless calibration images allow int8, which runs ahead of it.
    assert choose_path("auto", "auto", "cpu", machine=BF16_VNNI_CPU).name == "bf16:torch"
    assert choose_path("auto", "auto", "cpu", machine=BF16_VNNI_CPU, calibration=True).name == "int8:onnxruntime"
    # With AMX, bf16 stays first even when int8 could be calibrated.
    assert choose_path("auto", "auto", "cpu", machine=AMX_CPU, calibration=True).name == "bf16:torch"
    # Without VNNI int8 does not pay, so auto never takes it.
    assert choose_path("auto", "auto", "cpu", machine=PLAIN_CPU, calibration=True).precision != "int8"


def test_a_missing_capability_is_named() -> None:
    with pytest.raises(ValueError, match="AMX or AVX-512 BF16"):
        choose_path("bf16", "torch", "cpu", machine=PLAIN_CPU)
    with pytest.raises(ValueError, match="CUDA"):
        choose_path("fp16", "torch", "cpu", machine=AMX_CPU)
    with pytest.raises(ValueError, match="CUDA device"):
        choose_path("fp16", "tensorrt", "cpu", machine=AMX_CPU)
    with pytest.raises(ValueError, match="unknown precision"):
        choose_path("fp8", "torch", "cpu")


@pytest.fixture()
def eager_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile captures graphs but runs them eagerly: what is tested is the capture, in seconds."""
    monkeypatch.setattr(runners, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()


@pytest.mark.parametrize("path", [p for p in available_paths("cpu")], ids=lambda p: p.name)
def test_every_path_matches_fp32(path: DeploymentPath, eager_compile: None) -> None:
    torch.manual_seed(0)
    model = create_model("mtl_h-4").eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        expected = model(images)
    calibration = [np.random.default_rng(i).standard_normal((1, 3, 64, 64), dtype=np.float32) for i in range(2)]
    runner = build_runner(model, path, (64, 64), calibration if path.precision == "int8" else None)
    with torch.inference_mode():
        got = runner(images)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name].dtype == torch.float32 and got[name].shape == value.shape
        error = float((got[name] - value).abs().max() / value.abs().max())
        assert error <= TOLERANCE[path.precision], (path, name, error)


def test_predictor_runs_auto_and_says_which_path() -> None:
    torch.manual_seed(0)
    model = create_model("mtl_h-4")
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    fast = Predictor(model, input_size=64, precision="auto", backend="auto")
    assert fast.path == choose_path("auto", "auto", "cpu")
    twin = create_model("mtl_h-4").eval().requires_grad_(False)
    twin.load_state_dict(model.state_dict())
    reference = Predictor(twin, input_size=64, fold_batchnorm=False)
    agree = (fast(image).seg == reference(image).seg).mean()
    assert agree > 0.9  # a low precision may flip a few near-tied pixels of a random-weight model


def test_int8_without_calibration_is_refused() -> None:
    if "int8:onnxruntime" not in [p.name for p in available_paths("cpu")]:
        pytest.skip("no INT8 path here")
    with pytest.raises(ValueError, match="calibration"):
        Predictor(create_model("mtl_h-4"), input_size=64, precision="int8", backend="onnxruntime")


def test_compiled_predictor_compiles_a_bounded_number_of_times(eager_compile: None) -> None:
    from torch._dynamo.utils import counters

    counters.clear()
    predictor = Predictor(create_model("mtl_h-4"), input_size=64, backend="torch.compile", batch_size=1)
    rng = np.random.default_rng(0)
    for height, width in ((60, 90), (64, 140), (80, 64), (64, 200), (100, 64)):
        predictor(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    # Five padded sizes; height and width are dynamic, so only the convolution kernels' size classes
    # (guards on H * W thresholds) make new graphs, and a second pass over the sizes compiles nothing.
    compiled = counters["stats"]["unique_graphs"]
    assert 1 <= compiled <= 3
    for height, width in ((60, 90), (64, 200)):
        predictor(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    assert counters["stats"]["unique_graphs"] == compiled


def test_machine_describes_its_flags() -> None:
    machine = this_machine()
    assert machine.cpu and machine.threads >= 1
    assert "amx_bf16" in AMX_CPU.describe() and AMX_CPU.fast_bf16 and AMX_CPU.vnni and not PLAIN_CPU.vnni
