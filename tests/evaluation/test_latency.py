"""measure_latency: forward and post-processing timed apart, modes and threads restored."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from evaluation import measure_latency


class Sleeper(nn.Module):
    """Takes a known time and records the mode it ran in."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.conv = nn.Conv2d(3, 1, 1)
        self.seen = []

    def forward(self, images: torch.Tensor) -> dict:
        self.seen.append((self.training, torch.is_inference_mode_enabled(), tuple(images.shape)))
        time.sleep(self.seconds)
        return {"x": self.conv(images)}


def test_forward_and_postprocess_timed_separately() -> None:
    model = Sleeper(0.02).train()
    calls = []
    report = measure_latency(model, (32, 64), batch_size=2, warmup=1, runs=4,
                             postprocess=lambda out: (calls.append(out["x"].shape), time.sleep(0.005)))
    assert report.forward.runs == 4 and len(model.seen) == 5 and len(calls) == 5
    assert model.seen[0] == (False, True, (2, 3, 32, 64))
    assert model.training, "train mode restored"
    # Sleeps are lower bounds: the forward sleep must not leak into post-processing or back.
    assert report.forward.median_ms >= 20 and report.postprocess.median_ms >= 5
    assert report.forward.p10_ms <= report.forward.median_ms <= report.forward.p90_ms
    assert report.fps == pytest.approx(2e3 / (report.forward.median_ms + report.postprocess.median_ms))


def test_threads_stated_and_restored() -> None:
    before = torch.get_num_threads()
    report = measure_latency(Sleeper(0.0), 32, runs=1, warmup=0, threads=1)
    assert report.threads == 1 and report.postprocess is None
    assert torch.get_num_threads() == before
    assert report.as_dict()["device"] == "cpu"
