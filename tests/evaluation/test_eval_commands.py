"""``mtl-ehrnet evaluate`` and ``mtl-ehrnet benchmark`` on a tiny model and synthetic data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import save_checkpoint
from mtl_ehrnet.cli import main
from mtl_ehrnet.data import generate_synthetic


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    return generate_synthetic(tmp_path_factory.mktemp("synth"), images=5, size=(96, 64))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "mtl.pt", create_model("mtl_h-4"))


def test_evaluate_prints_coco_and_cityscapes_metrics(synthetic, checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "metrics.json"
    results = tmp_path / "results.json"
    code = main([
        "evaluate", str(checkpoint), "--coco", str(synthetic.coco_annotations("val")),
        str(synthetic.coco_images("val")), "--cityscapes", str(synthetic.cityscapes_root), "--split", "val", "--flip",
        "--input-size", "64", "--device", "cpu", "--json", str(out), "--results", str(results),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| AP | AP50 | AP75 | APM | APL | AR |" in printed and "mIoU" in printed
    metrics = json.loads(out.read_text())
    assert set(metrics["coco"]) >= {"AP", "AP50", "AP75", "APM", "APL", "AR"}
    assert 0.0 <= metrics["cityscapes"]["mIoU"] <= 1.0 and "road" in metrics["cityscapes"]["per_class_iou"]
    assert isinstance(json.loads(results.read_text()), list)


def test_evaluate_refuses_a_task_the_model_lacks(synthetic, tmp_path: Path, capsys) -> None:
    pose_only = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4"))
    assert main(["evaluate", str(pose_only), "--cityscapes", str(synthetic.cityscapes_root), "--device", "cpu"]) == 1
    assert "segmentation head" in capsys.readouterr().err
    assert main(["evaluate", str(pose_only), "--device", "cpu"]) == 1


def test_benchmark_prints_one_row_per_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--models", "pose_h-4,mtl_h-4", "--input-size", "64", "--runs", "1", "--warmup", "0",
                 "--threads", "1", "--device", "cpu", "--no-memory", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| pose_h-4 | pose | 64x64 |" in printed and "| mtl_h-4 | pose+seg | 64x64 |" in printed
    rows = json.loads(out.read_text())["models"]
    assert [r["model"] for r in rows] == ["pose_h-4", "mtl_h-4"]
    assert rows[1]["params"] > rows[0]["params"] > 0 and rows[0]["fps"] > 0 and rows[0]["threads"] == 1
    assert "peak_memory_mb" not in rows[0] and "peak memory:" not in printed  # --no-memory
    assert main(["benchmark", "--models", "nope"]) == 1


def test_benchmark_runs_every_model_on_each_backbone(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--models", "mtl_h-4", "--backbones", "efficientnet,timm:mobilenetv3_small_100",
                 "--input-size", "64", "--runs", "1", "--warmup", "0", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["models"]
    assert [r["model"] for r in rows] == ["mtl_h-4 [efficientnet]", "mtl_h-4 [timm:mobilenetv3_small_100]"]
    assert rows[0]["params"] != rows[1]["params"]
    # Each trunk's memory is measured on that trunk: at least its fp32 weights.
    assert all(r["peak_memory_mb"] >= r["params"] * 4 / 2**20 for r in rows)
