"""The `synth` and `data-benchmark` subcommands."""
from __future__ import annotations

from pycocotools.coco import COCO

from mtl_ehrnet.cli import main
from mtl_ehrnet.data.benchmark import benchmark_pipeline


def test_synth_command_writes_the_dataset(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "out"), "--images", "2", "--seed", "1", "--size", "64x48"]) == 0
    coco = COCO(str(tmp_path / "out" / "coco" / "annotations" / "person_keypoints_train.json"))
    assert coco.imgs[1]["width"] == 64 and coco.imgs[1]["height"] == 48
    assert len(list((tmp_path / "out" / "cityscapes" / "gtFine").rglob("*_gtFine_labelIds.png"))) == 2
    assert "joint/val" in capsys.readouterr().out


def test_synth_command_bad_input_is_one_line(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--images", "0"]) == 1
    assert "error: --images must be at least 1" in capsys.readouterr().err


def test_benchmark_runs(synth):
    # Not a timing test: the pipeline runs end to end and reports a positive rate.
    assert benchmark_pipeline(synth.root, input_size=64, workers=0, batch_size=2, batches=2, warmup=1) > 0
