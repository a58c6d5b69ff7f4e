"""Timing a training step leaves the timed model untouched, and a passing load does not skew one model."""
import pytest
import torch
from torch import nn

from mtl_ehrnet.training import step_timer
from mtl_ehrnet.training.step_timer import seconds_per_step, seconds_per_step_each


class FakeClock:
    """Stands in for the ``time`` module of :mod:`mtl_ehrnet.training.step_timer`: time passes only when a
    test says so, so the measured steps take exactly what the test makes them take."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(step_timer, "time", fake)
    return fake


def test_seconds_per_step_times_a_copy(clock: FakeClock) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def loss_fn(outputs, batch):  # noqa: ANN001, ANN202
        clock.sleep(0.25)
        return {"mean": outputs.mean(), "square": (outputs ** 2).mean()}

    seconds = seconds_per_step(model, loss_fn, {"image": torch.randn(2, 3, 8, 8)}, steps=2, warmup=1)
    assert seconds == 0.25
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and BN stats kept
    with pytest.raises(ValueError, match="steps"):
        seconds_per_step(model, loss_fn, {"image": torch.randn(2, 3, 8, 8)}, steps=0)


def test_rounds_keep_a_passing_load_off_every_median(clock: FakeClock) -> None:
    calls = []

    def loss_fn(outputs, batch):  # noqa: ANN001, ANN202
        calls.append(1)
        # A load on the machine during calls 2 and 3: timed one model after the other (a a a b b b) it
        # would hit two of model "a"'s three steps; in rounds of an untimed and a timed step per model
        # (a a b b, three times) one timed step of "a".
        clock.sleep(0.25 if len(calls) in (2, 3) else 0.125)
        return {"mean": outputs.mean()}

    models = {name: (nn.Conv2d(3, 4, 3), loss_fn, {"image": torch.randn(1, 3, 8, 8)}) for name in ("a", "b")}
    seconds = seconds_per_step_each(models, steps=3, warmup=0)
    assert len(calls) == 12
    assert seconds == {"a": 0.125, "b": 0.125}
