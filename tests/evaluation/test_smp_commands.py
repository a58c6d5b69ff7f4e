"""evaluate, predict, export and benchmark take an smp teacher checkpoint as they take ours: every command
loads through mtl_ehrnet.load_model, which builds any registered kind."""
import json
from pathlib import Path

import pytest
import torch

from mtl_ehrnet.checkpoint import load_model, save_checkpoint
from mtl_ehrnet.cli import main
from mtl_ehrnet.data import SyntheticLayout
from teachers.train import build_teacher


@pytest.fixture(scope="module")
def smp_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    teacher = build_teacher("seg", "smp:Unet:resnet18", input_size=64)
    return save_checkpoint(tmp_path_factory.mktemp("smp") / "smp.pt", teacher)


def test_load_model_builds_the_smp_kind(smp_checkpoint: Path) -> None:
    model = load_model(smp_checkpoint)
    assert type(model).__name__ == "SmpSegmentationTeacher" and not model.training
    assert tuple(model.tasks) == ("seg",) and model(torch.zeros(1, 3, 64, 64))["seg"].shape[:2] == (1, 19)


def test_every_inference_command_takes_it(smp_checkpoint: Path, synth: SyntheticLayout, tmp_path: Path) -> None:
    scores = tmp_path / "eval.json"
    assert main(["evaluate", str(smp_checkpoint), "--cityscapes", str(synth.cityscapes_root), "--split", "val",
                 "--limit", "2", "--input-size", "64", "--json", str(scores)]) == 0
    assert 0 <= json.loads(scores.read_text())["cityscapes"]["mIoU"] <= 1
    image = next((synth.cityscapes_root / "leftImg8bit" / "val").glob("*/*.png"))
    assert main(["predict", "--out", str(tmp_path / "pred"), "--seg-model", str(smp_checkpoint), str(image),
                 "--input-size", "64"]) == 0
    assert any((tmp_path / "pred").iterdir())
    assert main(["export", str(smp_checkpoint), "--onnx", str(tmp_path / "smp.onnx"), "--input-size", "64", "64"]) == 0
    assert (tmp_path / "smp.onnx").stat().st_size > 1000
    rows = tmp_path / "bench.json"
    assert main(["benchmark", "--models", str(smp_checkpoint), "--runs", "1", "--warmup", "0", "--input-size", "64",
                 "--no-memory", "--json", str(rows)]) == 0
    assert json.loads(rows.read_text())["models"][0]["tasks"] == ["seg"]
