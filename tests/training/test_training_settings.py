"""Settings that make training fast at scale: persistent loader workers that still see each epoch, a worker
count from the CPUs, uint8 segmentation targets, bf16 autocast, cuDNN autotuning, the logging cadence, and
the command-line switches that set them."""
import os
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mtl_ehrnet import create_model
from mtl_ehrnet.data import Cityscapes, CocoKeypoints, SyntheticLayout, TrainTransform, collate_samples
from mtl_ehrnet.training import GroundTruthLoss, RunConfig, fit
from mtl_ehrnet.training.engine import _cudnn_autotuned, train_loader
from mtl_ehrnet.training.metric_log import read_log
from mtl_ehrnet.training.run_config import default_workers
from mtl_ehrnet.training.seeding import EpochBatches, EpochBatchSampler, SeededDataset
from mtl_ehrnet.training.seg_loss import segmentation_ce


class _Draws(Dataset):
    """Item i: the loading process and a draw from the global RNG (which SeededDataset seeds per epoch and item)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(os.getpid()), torch.rand(()).item()])


def _epochs(workers: int, epochs: int = 2) -> List[torch.Tensor]:
    config = RunConfig(workers=workers, seed=7, batch_size=2)
    batches = EpochBatches(lambda epoch, skip: EpochBatchSampler(4, 2, 7, epoch, skip=skip))
    loader = train_loader(SeededDataset(_Draws(), 7), batches, config, torch.device("cpu"))
    assert loader.persistent_workers is (workers > 0) and not loader.pin_memory
    seen = []
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        seen.append(torch.cat(list(loader)))
    return seen


def test_loader_workers_persist_and_see_each_epoch() -> None:
    first, second = _epochs(workers=1)
    assert first[:, 0].unique().numel() == 1 and torch.equal(first[:, 0], second[:, 0])  # one worker, kept
    assert first[0, 0] != os.getpid()
    assert not torch.equal(first[:, 1].sort().values, second[:, 1].sort().values)  # epoch 2 augments anew
    in_process = _epochs(workers=0)
    for loaded, local in zip((first, second), in_process):
        assert torch.equal(loaded[:, 1], local[:, 1])  # the same draws whoever loads them
    assert train_loader(SeededDataset(_Draws(), 0), EpochBatches(lambda e, s: EpochBatchSampler(4, 2, 0, e)),
                        RunConfig(workers=0), torch.device("cuda")).pin_memory


def test_default_workers_follow_the_cpus_of_each_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for cpus, processes, expected in ((64, "1", 8), (16, "4", 4), (2, "1", 2), (2, "8", 1)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(cpus)), raising=False)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", processes)
        assert default_workers() == expected
        assert RunConfig().workers == expected


def test_segmentation_batches_carry_uint8_and_the_loss_is_unchanged(synth: SyntheticLayout) -> None:
    seg = Cityscapes(synth.cityscapes_root, "train", TrainTransform(64))
    pose = CocoKeypoints(synth.coco_images("train"), synth.coco_annotations("train"), TrainTransform(64))
    batch = collate_samples([seg[0], seg[1], pose[0]])
    labels = batch["seg"]
    assert labels.dtype == torch.uint8 and (labels[2] == 255).all() and (labels[:2] != 255).any()
    torch.manual_seed(0)
    logits = torch.randn(3, 19, 16, 16)
    upsampled = F.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)
    reference = F.cross_entropy(upsampled, labels.long(), ignore_index=255)
    loss = GroundTruthLoss(("seg",))({"seg": logits}, batch)["seg/ce"]
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    weights = torch.rand(19) + 0.5
    for options in ({"ohem_threshold": 0.7, "ohem_min_kept": 500}, {"class_weights": weights}):
        widened = segmentation_ce(logits, labels.long(), **options).item()
        assert segmentation_ce(logits, labels, **options).item() == pytest.approx(widened, rel=1e-6)


def _pose_set(synth: SyntheticLayout) -> CocoKeypoints:
    return CocoKeypoints(synth.coco_images("train"), synth.coco_annotations("train"), TrainTransform(64))


def test_a_bf16_cpu_step_runs_and_its_loss_is_finite(synth: SyntheticLayout, tmp_path: Path) -> None:
    model = create_model("pose_h-4", input_size=64)
    before = [p.detach().clone() for p in model.parameters()]
    base = GroundTruthLoss(model.tasks)
    dtypes = []

    def loss_fn(outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        dtypes.append(outputs["heatmaps"].dtype)
        return base(outputs, batch)

    config = RunConfig(epochs=1, batch_size=2, workers=0, steps_per_epoch=1, val_every=0, device="cpu", amp="bf16")
    fit(model, loss_fn, _pose_set(synth), config, tmp_path)
    assert dtypes == [torch.bfloat16]
    record = read_log(tmp_path / "log.jsonl", "train")[0]
    assert isinstance(record["loss"], float) and 0 < record["loss"] < 1e3
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_train_records_hold_the_mean_of_the_steps_since_the_last(synth: SyntheticLayout, tmp_path: Path) -> None:
    model = create_model("pose_h-4", input_size=64)
    base = GroundTruthLoss(model.tasks)
    steps: List[float] = []

    def loss_fn(outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        terms = base(outputs, batch)
        steps.append(float(terms["pose/heatmaps"].detach()))
        return terms

    config = RunConfig(epochs=1, batch_size=2, workers=0, steps_per_epoch=3, val_every=0, device="cpu", log_every=2)
    fit(model, loss_fn, _pose_set(synth), config, tmp_path)
    records = read_log(tmp_path / "log.jsonl", "train")
    assert [r["step"] for r in records] == [2, 3]  # every 2 steps, and the epoch's last
    assert records[0]["pose/heatmaps"] == pytest.approx((steps[0] + steps[1]) / 2, rel=1e-5)
    assert records[1]["pose/heatmaps"] == pytest.approx(steps[2], rel=1e-5)
    epoch = read_log(tmp_path / "log.jsonl", "epoch")[0]
    assert epoch["pose/heatmaps"] == pytest.approx(sum(steps) / 3, rel=1e-5)


def test_cudnn_autotunes_training_on_cuda_only() -> None:
    before = torch.backends.cudnn.benchmark
    with _cudnn_autotuned(torch.device("cuda")):
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before
    with _cudnn_autotuned(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark == before


def test_old_amp_values_and_bad_ones() -> None:
    assert RunConfig(amp=True).amp == "fp16" and RunConfig(amp=False).amp == "off"
    assert RunConfig.from_dict({**RunConfig().to_dict(), "amp": True}).amp == "fp16"
    with pytest.raises(ValueError, match="amp"):
        RunConfig(amp="fp8")


class _Stop(Exception):
    """Raised by the stand-in for fit once it has the run config."""


def _capture_config(monkeypatch: pytest.MonkeyPatch, module: object) -> List[RunConfig]:
    seen: List[RunConfig] = []

    def fake_fit(model, loss_fn, train_set, config, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(module, "fit", fake_fit)
    return seen


@pytest.mark.parametrize("switches, expected", [
    (["--set", "run.amp=bf16", "--set", "run.channels_last=false", "--set", "run.sync_bn=true", "--set",
      "run.log_every=5"], {"amp": "bf16", "channels_last": False, "sync_bn": True, "log_every": 5}),
    (["--set", "run.amp=off", "--set", "run.channels_last=true"],
     {"amp": "off", "channels_last": True, "sync_bn": False, "log_every": 10}),
    ([], {"amp": "fp16", "channels_last": True, "sync_bn": False, "log_every": 10}),
])
def test_switches_reach_the_run_config_of_both_training_commands(
    synth: SyntheticLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, switches: List[str],
    expected: Dict[str, object],
) -> None:
    from importlib import import_module

    from mtl_ehrnet.cli import main

    coco = [str(synth.coco_annotations("train")), str(synth.coco_images("train"))]
    commands = {
        import_module("teachers.train"): ["train-teacher", "pose", "--model", "pose_h-4", "--coco", *coco],
        import_module("distill.student"): ["distill", "--student", "mtl_h-4", "--coco", *coco,
                                           "--cityscapes", str(synth.cityscapes_root)],
    }
    for module, command in commands.items():
        seen = _capture_config(monkeypatch, module)
        with pytest.raises(_Stop):
            main([*command, "--set", "data.input_size=64", "--epochs", "1", "--out", str(tmp_path / command[0]),
                  *switches])
        assert {name: getattr(seen[0], name) for name in expected} == expected, command[0]
