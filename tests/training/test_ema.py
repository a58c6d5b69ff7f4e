"""Weight EMA: the average's arithmetic, and the engine validating, saving and resuming it."""
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import read_checkpoint
from mtl_ehrnet.data import CocoKeypoints, SyntheticLayout, TrainTransform
from mtl_ehrnet.training import GroundTruthLoss, RunConfig, fit
from mtl_ehrnet.training.ema import build_ema, warmup_decay


def test_warmup_decay_ramps_to_the_decay() -> None:
    assert warmup_decay(0.999, 0) == pytest.approx(0.1)
    assert warmup_decay(0.999, 10) == pytest.approx(11 / 20)
    assert warmup_decay(0.5, 10) == 0.5


def test_ema_hand_case_parameters_and_buffers() -> None:
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = build_ema(model, decay=0.5)
    ema.update_parameters(model)  # first call copies
    with torch.no_grad():
        model[0].weight.fill_(3.0)
        model[1].running_mean.fill_(2.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update_parameters(model)  # decay min(0.5, 1/10) = 0.1: 0.1 * 1 + 0.9 * 3
    assert ema.module[0].weight.item() == pytest.approx(2.8)
    assert ema.module[1].running_mean.item() == pytest.approx(1.8)
    assert ema.module[1].num_batches_tracked.item() == 7
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    ema.update_parameters(model)  # decay min(0.5, 2/11) = 2/11
    assert ema.module[0].weight.item() == pytest.approx(2.8 * 2 / 11)
    assert not any(p.requires_grad for p in ema.parameters())
    with pytest.raises(ValueError, match="ema_decay"):
        build_ema(model, decay=1.0)


def _config(**changes) -> RunConfig:
    base = dict(
        epochs=2, batch_size=2, workers=0, steps_per_epoch=2, lr=1e-3, val_every=1, monitor="score", ema_decay=0.9
    )
    base.update(changes)
    return RunConfig(**base)


def _flat(state: dict) -> torch.Tensor:
    return torch.cat([v.flatten().float() for v in state.values()])


@pytest.fixture()
def pose_set(synth: SyntheticLayout) -> CocoKeypoints:
    return CocoKeypoints(synth.coco_images("train"), synth.coco_annotations("train"), TrainTransform(64))


def test_fit_validates_and_saves_the_average_and_resumes_it(pose_set: CocoKeypoints, tmp_path: Path) -> None:
    seen = []

    def validate(model: nn.Module) -> dict:
        seen.append(_flat(model.state_dict()).clone())
        return {"score": float(len(seen))}

    torch.manual_seed(0)
    model = create_model("pose_h-4", input_size=64)
    fit(model, GroundTruthLoss(model.tasks), pose_set, _config(), tmp_path / "whole", validate=validate)
    last = read_checkpoint(tmp_path / "whole" / "last.pt")
    assert last["ema_updates"] == 4
    assert torch.equal(_flat(last["model"]), seen[-1])  # the validated weights are the saved ones
    assert torch.equal(_flat(last["train_model"]), _flat(model.state_dict()))
    assert not torch.allclose(_flat(last["model"]), _flat(last["train_model"]))
    assert torch.equal(_flat(read_checkpoint(tmp_path / "whole" / "best.pt")["model"]), seen[-1])

    # One epoch, then --resume to two: the same average and the same trained weights.
    torch.manual_seed(0)
    first = create_model("pose_h-4", input_size=64)
    fit(first, GroundTruthLoss(first.tasks), pose_set, _config(epochs=1), tmp_path / "split")
    again = create_model("pose_h-4", input_size=64)
    fit(again, GroundTruthLoss(again.tasks), pose_set, _config(), tmp_path / "split", resume=True)
    resumed = read_checkpoint(tmp_path / "split" / "last.pt")
    assert torch.equal(_flat(resumed["model"]), _flat(last["model"]))
    assert torch.equal(_flat(resumed["train_model"]), _flat(last["train_model"]))
    with pytest.raises(ValueError, match="ema_decay"):
        fit(again, GroundTruthLoss(again.tasks), pose_set, _config(ema_decay=None), tmp_path / "split", resume=True)
