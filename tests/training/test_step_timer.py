"""Timing a training step leaves the timed model untouched."""
import pytest
import torch
from torch import nn

from mtl_ehrnet.training.step_timer import seconds_per_step


def test_seconds_per_step_times_a_copy() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def loss_fn(outputs, batch):  # noqa: ANN001, ANN202
        return {"mean": outputs.mean(), "square": (outputs ** 2).mean()}

    seconds = seconds_per_step(model, loss_fn, {"image": torch.randn(2, 3, 8, 8)}, steps=2, warmup=1)
    assert seconds > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and BN stats kept
    with pytest.raises(ValueError, match="steps"):
        seconds_per_step(model, loss_fn, {"image": torch.randn(2, 3, 8, 8)}, steps=0)
