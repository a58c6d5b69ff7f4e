"""Tuned paths: the fastest candidate is kept, every candidate is timed, and the flags refuse what cannot be tuned."""
from __future__ import annotations

import argparse
import time

import pytest
import torch

from evaluation.commands.path_flags import predictor_options, tuned_paths_line
from mtl_ehrnet import Predictor, create_model
from mtl_ehrnet.inference import path_tuning
from mtl_ehrnet.inference.deployment import DeploymentPath, candidate_paths
from mtl_ehrnet.inference.machine import Machine

BF16_VNNI_CPU = Machine("AVX-512 BF16 CPU", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}), 2)


class _SleepingRunner(torch.nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, images: torch.Tensor) -> dict:
        time.sleep(self.seconds)
        return {"seg": images[:, :1]}


def test_the_fastest_candidate_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    slow, fast = DeploymentPath("fp32", "torch"), DeploymentPath("fp32", "onnxruntime")
    delays = {slow: 0.02, fast: 0.002}
    monkeypatch.setattr(path_tuning, "runner_keeping_model",
                        lambda model, path, size, calibration: _SleepingRunner(delays[path]))
    tuned = path_tuning.fastest_path(torch.nn.Identity(), [slow, fast], (32, 32), rounds=3, warmup=1)
    assert tuned.path == fast and tuned.runner.seconds == delays[fast]
    assert list(tuned.seconds) == [str(fast), str(slow)]  # fastest first
    assert tuned.seconds[str(fast)] < 0.01 < tuned.seconds[str(slow)]


def test_candidates_follow_auto_and_the_machine() -> None:
    paths = candidate_paths("auto", "auto", "cpu", machine=BF16_VNNI_CPU, calibration=True)
    names = [p.name for p in paths]
    assert names[-1] == "fp32:torch" and "bf16:torch" in names
    assert names.index("bf16:torch") < names.index("fp32:torch")
    assert [p.name for p in candidate_paths("fp32", "torch", "cpu", machine=BF16_VNNI_CPU)] == ["fp32:torch"]
    assert candidate_paths("bf16", "torch", "cpu", machine=Machine("old CPU", frozenset({"avx2"}), 2)) == []


def test_tuned_predictor_times_every_candidate_and_keeps_the_model() -> None:
    torch.manual_seed(0)
    model = create_model("mtl_h-4").eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    predictor = Predictor(model, input_size=64, precision="fp32", backend="auto", tune=True, batch_size=1)
    expected = {str(p) for p in candidate_paths("fp32", "auto", "cpu")}
    assert set(predictor.path_seconds) == expected
    assert str(predictor.path) == next(iter(predictor.path_seconds))
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    image = torch.randint(0, 256, (60, 80, 3), dtype=torch.uint8).numpy()
    ours, plain = predictor(image), Predictor(model, input_size=64)(image)
    assert ours.seg.shape == plain.seg.shape == (60, 80)
    assert (ours.seg == plain.seg).mean() > 0.99  # fp32 on every candidate: the same map up to rounding
    assert tuned_paths_line(predictor).startswith(f"tuned: {predictor.path} ")
    assert tuned_paths_line(Predictor(model, input_size=64)) == ""


def test_tune_needs_a_choice() -> None:
    args = argparse.Namespace(precision="fp32", backend="torch", calibration=None, calibration_images=8, tune=True)
    with pytest.raises(ValueError, match="--tune chooses among paths"):
        predictor_options(args)
    args.backend = "auto"
    assert predictor_options(args) == {"precision": "fp32", "backend": "auto", "tune": True}
    args.tune = False
    assert predictor_options(args) == {"precision": "fp32", "backend": "torch"}
