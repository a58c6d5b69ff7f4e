"""The training engine: trains, skips non-finite steps, refuses inconsistent resumes."""
import math
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
    result = fit(model, GroundTruthLoss(model.tasks), pose_set, _config(epochs=2, log_every=1), tmp_path,
                 validate=lambda m: {"score": next(scores)})
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert result.best_value == 0.5 and result.best_checkpoint == tmp_path / "best.pt"
    assert read_checkpoint(tmp_path / "best.pt")["best_value"] == 0.5
    train_records = read_log(tmp_path / "log.jsonl", "train")
    assert len(train_records) == 6
    assert {"pose/heatmaps", "pose/heatmaps_lr", "pose/pull", "pose/push", "loss", "lr"} <= set(train_records[0])
    assert [r["score"] for r in read_log(tmp_path / "log.jsonl", "val")] == [0.3, 0.5]


def test_the_loss_prepares_each_batch_before_the_forward_pass(pose_set: CocoKeypoints, tmp_path: Path) -> None:
    model = create_model("pose_h-4", input_size=64)
    base = GroundTruthLoss(model.tasks)
    events = []
    model.register_forward_pre_hook(lambda module, args: events.append(("forward", args[0].data_ptr())))

    class Prepared:
        def prepare(self, batch):  # noqa: ANN001, ANN202
            events.append(("prepare", batch["image"].data_ptr()))

        def __call__(self, outputs, batch):  # noqa: ANN001, ANN204
            return base(outputs, batch)

    fit(model, Prepared(), pose_set, _config(), tmp_path)
    assert [kind for kind, _ in events] == ["prepare", "forward"] * 3
    assert all(events[i][1] == events[i + 1][1] for i in range(0, 6, 2))  # the very batch the model then gets


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


def test_task_ratios_fix_each_task_share_and_resume_mid_epoch() -> None:
    from torch.utils.data import TensorDataset

    from mtl_ehrnet.data import MixedTaskDataset
    from mtl_ehrnet.training.engine import _epoch_batches

    mixed = MixedTaskDataset([TensorDataset(torch.zeros(10)), TensorDataset(torch.zeros(30))])
    config = RunConfig(batch_size=4, task_ratios=(1, 1), seed=3)
    batches = list(_epoch_batches(mixed, config, 0, 0, 1, skip=0))
    assert len(batches) == 15  # enough for the 30-sample task to appear once at 2 per batch
    assert all(sum(i < 10 for i in b) == 2 and len(b) == 4 for b in batches)  # the small task is oversampled
    assert list(_epoch_batches(mixed, config, 0, 0, 1, skip=5)) == batches[5:]
    capped = RunConfig(batch_size=4, task_ratios=(1, 1), seed=3, steps_per_epoch=4)
    assert list(_epoch_batches(mixed, capped, 0, 0, 1, skip=1)) == batches[1:4]
    uniform = list(_epoch_batches(mixed, RunConfig(batch_size=4, seed=3), 0, 0, 1, skip=0))
    assert len(uniform) == 10 and sorted(i for b in uniform for i in b) == list(range(40))
    with pytest.raises(ValueError, match="MixedTaskDataset"):
        _epoch_batches(TensorDataset(torch.zeros(8)), config, 0, 0, 1, skip=0)
    with pytest.raises(ValueError, match="task_ratios"):
        RunConfig(task_ratios=(0, 0))
    assert RunConfig.from_dict(config.to_dict()).task_ratios == (1.0, 1.0)


def test_gradient_clipping_covers_the_loss_module_parameters(pose_set: CocoKeypoints, tmp_path: Path) -> None:
    class LearnedTerm(torch.nn.Module):
        """The ground truth plus a term of a loss-module parameter whose gradient is 1e4."""

        def __init__(self) -> None:
            super().__init__()
            self.gt = GroundTruthLoss(("pose",))
            self.scale = torch.nn.Parameter(torch.zeros(()))

        def forward(self, outputs, batch):  # noqa: ANN001, ANN202
            return {**self.gt(outputs, batch), "learned": 1e4 * self.scale}

    model = create_model("pose_h-4", input_size=64)
    loss = LearnedTerm()
    config = _config(optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, grad_clip=0.5, steps_per_epoch=1)
    fit(model, loss, pose_set, config, tmp_path)
    # One SGD step on the clipped gradient of every trained parameter: the norm of any update <= lr * 0.5.
    assert -0.5 - 1e-6 <= loss.scale.item() < 0


def test_a_step_dropped_on_the_device_leaves_the_weights_and_counts(pose_set: CocoKeypoints, tmp_path: Path) -> None:
    """After the first step the fused optimizer's kernel drops a non-finite step (no read-back); the weights and
    the optimizer's moments stay as they were, and a row of such steps still stops the run."""
    model = create_model("pose_h-4", input_size=64)
    base = GroundTruthLoss(model.tasks)
    seen = []

    def nan_at(bad_calls):  # noqa: ANN001, ANN202
        def loss(outputs, batch):  # noqa: ANN001, ANN202
            seen.append([p.detach().clone() for p in model.parameters()])
            terms = base(outputs, batch)
            if len(seen) in bad_calls:
                terms["pose/heatmaps"] = terms["pose/heatmaps"] * float("nan")
            return terms

        return loss

    result = fit(model, nan_at({2}), pose_set, _config(steps_per_epoch=4, val_every=0), tmp_path / "one")
    assert result.skipped_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(seen[1], seen[2]))  # the dropped step changed nothing
    assert any(not torch.equal(a, b) for a, b in zip(seen[2], seen[3]))  # the next one trains
    events = [r for r in read_log(tmp_path / "one" / "log.jsonl", "event") if r["event"] == "nonfinite_loss_skipped"]
    assert [(e["step_in_epoch"], e["steps"]) for e in events] == [(1, 1)]
    train = read_log(tmp_path / "one" / "log.jsonl", "train")
    assert all(math.isfinite(r["loss"]) for r in train)  # the dropped step's terms are left out of the means

    seen.clear()
    model = create_model("pose_h-4", input_size=64)
    with pytest.raises(NonFiniteLossError, match="3 consecutive non-finite losses"):
        fit(model, nan_at({2, 3, 4}), pose_set, _config(steps_per_epoch=5, val_every=0, max_nonfinite=3),
            tmp_path / "row")
