"""`data-benchmark`'s per-worker table: one row per (dataset, input size) and the workers-per-GPU arithmetic."""
from __future__ import annotations

import re

import pytest

from mtl_ehrnet.cli import main
from mtl_ehrnet.data.worker_rates import WorkerRate, format_rate_table, workers_needed


def test_workers_needed_rounds_up():
    assert workers_needed(10.0, 4, 8) == 4  # 32 samples/s from workers of 10 each
    assert workers_needed(8.0, 4, 8) == 4  # exactly enough
    assert workers_needed(100.0, 1, 8) == 1
    with pytest.raises(ValueError, match="positive"):
        workers_needed(0.0, 1, 8)


def test_table_has_a_row_per_rate_and_the_workers_column():
    rows = [WorkerRate("coco", (640, 480), (512, 512), 50.0), WorkerRate("cityscapes", (2048, 1024), (512, 1024), 7.0)]
    lines = format_rate_table(rows, steps_per_second=3, batch_size=8).splitlines()
    assert "workers/GPU (3 steps/s x batch 8)" in lines[0]
    assert lines[1].split() == ["coco", "640x480", "512x512", "50.0", "20.0", "1"]  # ceil(24 / 50)
    assert lines[2].split() == ["cityscapes", "2048x1024", "1024x512", "7.0", "142.9", "4"]  # ceil(24 / 7)
    assert "workers" not in format_rate_table(rows)


def test_command_prints_the_three_rows_with_consistent_workers(tmp_path, capsys):
    args = ["data-benchmark", "--data-dir", str(tmp_path), "--images", "2", "--samples", "2", "--batch-size", "2",
            "--coco-size", "64x48", "--cityscapes-size", "128x64", "--steps-per-second", "5", "--batches", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if re.match(r"^(coco|cityscapes) ", line)]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("coco", "64x48", "512x512"), ("cityscapes", "128x64", "512x512"), ("cityscapes", "128x64", "1024x512")]
    for _, _, _, rate, ms, workers in rows:
        assert float(rate) > 0 and float(ms) == pytest.approx(1000 / float(rate), rel=0.01, abs=0.1)
        # The printed rate is rounded; the workers come from the exact one, so allow the rounding's edge.
        assert int(workers) in {workers_needed(float(rate) + d, 5, 2) for d in (-0.05, 0.0, 0.05)}
    assert "task-mixed" not in out
    # The sets are cached: a second run finds them and generates nothing.
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert cached == ["synth-128x64-2img-seed0", "synth-64x48-2img-seed0"]
    stamps = [(tmp_path / name / "coco" / "annotations" / "person_keypoints_train.json").stat().st_mtime_ns
              for name in cached]
    assert main(args) == 0 and sorted(p.name for p in tmp_path.iterdir()) == cached
    assert stamps == [(tmp_path / name / "coco" / "annotations" / "person_keypoints_train.json").stat().st_mtime_ns
                      for name in cached]


def test_command_refuses_a_non_positive_step_rate(tmp_path, capsys):
    assert main(["data-benchmark", "--data-dir", str(tmp_path), "--steps-per-second", "0", "--batches", "0"]) == 1
    assert "--steps-per-second must be positive" in capsys.readouterr().err
