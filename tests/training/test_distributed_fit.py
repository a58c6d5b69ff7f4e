"""fit under torchrun, as 2 gloo processes on the CPU: a loss module's parameters and statistics stay equal
on every rank, an exception in validation stops every rank, and the checkpoint refuses another world size."""
from pathlib import Path
from typing import Dict

import pytest
import torch
from gloo_ranks import run_ranks
from torch import nn

from distill.balancing import DynamicWeightAverage, UncertaintyWeighting
from mtl_ehrnet import create_model
from mtl_ehrnet.data import CocoKeypoints, SyntheticLayout, TrainTransform
from mtl_ehrnet.training import GroundTruthLoss, RunConfig, fit
from mtl_ehrnet.training.metric_log import read_log

TERMS = ("pose/heatmaps", "pose/heatmaps_lr", "pose/pull", "pose/push")


class BalancedLoss(nn.Module):
    """Ground-truth terms weighted by DWA, then by learned uncertainty: statistics and parameters of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.gt = GroundTruthLoss(("pose",))
        self.dwa = DynamicWeightAverage(TERMS)
        self.uncertainty = UncertaintyWeighting(TERMS)

    def forward(self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return self.uncertainty(self.dwa(self.gt(outputs, batch)))

    def end_epoch(self) -> None:
        self.dwa.end_epoch()


def _config(**changes) -> RunConfig:
    # SGD: Adam's first steps move by lr * sign(grad), which can hide ranks that disagree in magnitude.
    base = dict(epochs=2, batch_size=2, workers=0, steps_per_epoch=2, optimizer="sgd", lr=0.05, momentum=0.0,
                weight_decay=0.0, grad_clip=5.0, val_every=0, device="cpu", channels_last=False)
    base.update(changes)
    return RunConfig(**base)


def _pose_set(images: str, annotations: str) -> CocoKeypoints:
    return CocoKeypoints(images, annotations, TrainTransform(64))


def _train_balanced(rank: int, images: str, annotations: str, out: str) -> None:
    torch.manual_seed(0)
    model = create_model("pose_h-4", input_size=64)
    loss = BalancedLoss()
    fit(model, loss, _pose_set(images, annotations), _config(), out)
    torch.save(loss.state_dict(), Path(out) / f"loss_rank{rank}.pt")


def _train_failing_validation(rank: int, images: str, annotations: str, out: str) -> None:
    def validate(model: nn.Module) -> Dict[str, float]:
        raise RuntimeError("validation broke")

    torch.manual_seed(0)
    model = create_model("pose_h-4", input_size=64)
    try:
        config = _config(epochs=1, steps_per_epoch=1, val_every=1)
        fit(model, GroundTruthLoss(model.tasks), _pose_set(images, annotations), config, out, validate=validate)
    except Exception as error:
        (Path(out) / f"error_rank{rank}.txt").write_text(f"{type(error).__name__}: {error}")
        raise


@pytest.fixture(scope="module")
def two_rank_run(synth: SyntheticLayout, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    codes = run_ranks(_train_balanced, str(synth.coco_images("train")), str(synth.coco_annotations("train")), str(out))
    assert codes == [0, 0]
    return out


def test_loss_module_parameters_and_statistics_stay_equal_on_every_rank(two_rank_run: Path) -> None:
    first, second = (torch.load(two_rank_run / f"loss_rank{rank}.pt") for rank in (0, 1))
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert first["uncertainty.log_vars"].abs().min() > 0  # trained: the ranks' batches differ, and they agreed
    assert int(first["dwa.epochs_seen"]) == 2 and (first["dwa.history"] > 0).all()
    finished = [r for r in read_log(two_rank_run / "log.jsonl", "event") if r["event"] == "finished"]
    assert [(r["world"], r["ranks_in_sync"]) for r in finished] == [(2, True)]


def test_resume_refuses_another_world_size(two_rank_run: Path, synth: SyntheticLayout) -> None:
    torch.manual_seed(0)
    model = create_model("pose_h-4", input_size=64)
    pose = _pose_set(str(synth.coco_images("train")), str(synth.coco_annotations("train")))
    with pytest.raises(ValueError, match=r"world size 2 .*world size 1"):
        fit(model, BalancedLoss(), pose, _config(epochs=3), two_rank_run, resume=True)


def test_an_exception_in_validation_stops_every_rank(synth: SyntheticLayout, tmp_path: Path) -> None:
    codes = run_ranks(_train_failing_validation, str(synth.coco_images("train")), str(synth.coco_annotations("train")),
                      str(tmp_path), timeout=150)
    assert all(code != 0 for code in codes), codes
    assert (tmp_path / "error_rank0.txt").read_text() == "RuntimeError: validation broke"
    expected = "RankFailedError: rank 0 failed: RuntimeError: validation broke"  # not a broken connection, nor a hang
    assert (tmp_path / "error_rank1.txt").read_text() == expected
