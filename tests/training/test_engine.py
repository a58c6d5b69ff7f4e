"""The training engine: trains, skips non-finite steps, refuses inconsistent resumes."""
from pathlib import Path

import pytest
import torch

from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import read_checkpoint
from mtl_ehrnet.data import CocoKeypoints, SyntheticLayout, TrainTransform
from mtl_ehrnet.training import GroundTruthLoss, NonFiniteLossError, RunConfig, fit
from mtl_ehrnet.training.metric_log import read_log


def _config(**changes) -> RunConfig:
    base = dict(epochs=1, batch_size=2, workers=0, steps_per_epoch=3, lr=1e-3, val_every=1, monitor="score")
    base.update(changes)
    return RunConfig(**base)


@pytest.fixture()
def pose_set(synth: SyntheticLayout) -> CocoKeypoints:
    return CocoKeypoints(synth.coco_images("train"), synth.coco_annotations("train"), TrainTransform(64))


def test_fit_trains_logs_and_checkpoints(pose_set: CocoKeypoints, tmp_path: Path) -> None:
    model = create_model("pose_h-4", input_size=64)
    before = [p.detach().clone() for p in model.parameters()]
    scores = iter([0.3, 0.5])
    result = fit(model, GroundTruthLoss(model.tasks), pose_set, _config(epochs=2), tmp_path,
                 validate=lambda m: {"score": next(scores)})
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert result.best_value == 0.5 and result.best_checkpoint == tmp_path / "best.pt"
    assert read_checkpoint(tmp_path / "best.pt")["best_value"] == 0.5
    train_records = read_log(tmp_path / "log.jsonl", "train")
    assert len(train_records) == 6
    assert {"pose/heatmaps", "pose/heatmaps_lr", "pose/pull", "pose/push", "loss", "lr"} <= set(train_records[0])
    assert [r["score"] for r in read_log(tmp_path / "log.jsonl", "val")] == [0.3, 0.5]


def test_nonfinite_steps_are_skipped_and_reported(pose_set: CocoKeypoints, tmp_path: Path) -> None:
    model = create_model("pose_h-4", input_size=64)
    base = GroundTruthLoss(model.tasks)
    calls = {"n": 0}

    def sometimes_nan(outputs, batch):
        calls["n"] += 1
        terms = base(outputs, batch)
        if calls["n"] == 2:
            terms["pose/heatmaps"] = terms["pose/heatmaps"] * float("nan")
        return terms

    result = fit(model, sometimes_nan, pose_set, _config(), tmp_path)
    assert result.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    events = [r for r in read_log(tmp_path / "log.jsonl", "event") if r["event"] == "nonfinite_loss_skipped"]
    assert len(events) == 1 and events[0]["pose/heatmaps"] == "nan"


def test_repeated_nonfinite_losses_stop_the_run(pose_set: CocoKeypoints, tmp_path: Path) -> None:
    model = create_model("pose_h-4", input_size=64)
    always_nan = lambda outputs, batch: {"bad": outputs["heatmaps"].sum() * float("inf")}  # noqa: E731
    with pytest.raises(NonFiniteLossError, match="2 consecutive non-finite losses"):
        fit(model, always_nan, pose_set, _config(max_nonfinite=2), tmp_path)


def test_resume_checks(pose_set: CocoKeypoints, tmp_path: Path) -> None:
    model = create_model("pose_h-4", input_size=64)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(model, GroundTruthLoss(model.tasks), pose_set, _config(), tmp_path, resume=True)
    fit(model, GroundTruthLoss(model.tasks), pose_set, _config(), tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, GroundTruthLoss(model.tasks), pose_set, _config(batch_size=3), tmp_path, resume=True)
    other = create_model("pose_h-3", input_size=64)
    with pytest.raises(ValueError, match="another architecture"):
        fit(other, GroundTruthLoss(other.tasks), pose_set, _config(epochs=2), tmp_path, resume=True)
