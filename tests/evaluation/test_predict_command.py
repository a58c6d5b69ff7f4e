"""``mtl-ehrnet predict`` and the pieces under it: video and image outputs, the JSON files, joint versus
separate models, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.media_prediction import class_pixel_counts, predict_media
from mtl_ehrnet import Predictor, create_model
from mtl_ehrnet.checkpoint import save_checkpoint
from mtl_ehrnet.cli import main
from mtl_ehrnet.inference.predictor import Prediction
from mtl_ehrnet.inference.sources import FrameSource
from mtl_ehrnet.inference.video import VideoReader, VideoWriter

SIZE = ["--input-size", "64", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "street.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(path, fps=8) as writer:
        for _ in range(5):
            writer.write(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8))
    return path


def test_video_in_playable_video_and_json_out(video: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["predict", "mtl_h-4", str(video), "--out", str(out), "--batch-size", "2", *SIZE]) == 0
    printed = capsys.readouterr().out
    assert "random weights" in printed and "5 frame(s), one model (mtl_h-4)" in printed and "FPS" in printed
    with VideoReader(out / "street.mp4") as reader:
        assert reader.size == (72, 96) and len(list(reader)) == 5 and reader.fps == 8.0
    assert isinstance(json.loads((out / "poses.json").read_text()), list)
    counts = json.loads((out / "pixel_counts.json").read_text())
    assert len(counts["classes"]) == 19 and counts["classes"][11] == "person"
    assert [i["image_id"] for i in counts["images"]] == [0, 1, 2, 3, 4]
    assert all(sum(i["pixel_counts"].values()) == 72 * 96 for i in counts["images"])
    run = json.loads((out / "run.json").read_text())
    assert run["frames"] == 5 and run["fps"] > 0 and not run["separate"]


def test_image_in_overlay_png_out_with_separate_models(tmp_path: Path, capsys) -> None:
    image = np.random.default_rng(1).integers(0, 255, (50, 90, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.jpg", quality=95)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "photo.jpg"), "--out", str(out), "--pose-model", "pose_h-4",
                 "--seg-model", "seg_h-4", *SIZE]) == 0
    assert "separate models (pose_h-4 + seg_h-4)" in capsys.readouterr().out
    overlay = np.asarray(Image.open(out / "photo.png"))
    assert overlay.shape == (50, 90, 3) and not np.array_equal(overlay, np.asarray(Image.open(tmp_path / "photo.jpg")))
    counts = json.loads((out / "pixel_counts.json").read_text())["images"]
    assert counts[0]["file_name"] == "photo.jpg" and sum(counts[0]["pixel_counts"].values()) == 50 * 90


def test_bad_input_gives_a_clear_error(video: Path, tmp_path: Path, capsys) -> None:
    pose = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4"))
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(video.read_bytes()[:300])
    out = str(tmp_path / "out")
    assert main(["predict", "mtl_h-4", str(tmp_path / "missing.mp4"), "--out", out]) == 1
    assert main(["predict", "mtl_h-4", str(corrupt), "--out", out]) == 1
    assert main(["predict", str(video), "--out", out, "--pose-model", "pose_h-4", "--seg-model", str(pose)]) == 1
    assert main(["predict", str(video), "--out", out, "--pose-model", "seg_h-4"]) == 1
    assert main(["predict", "mtl_h-4", str(video), "--out", out, "--device", "cpu", "--half"]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert "input not found" in errors[0] and "missing.mp4" in errors[0]
    assert "cannot read video" in errors[1] and "broken.mp4" in errors[1]
    assert f"--seg-model: {pose} holds a model with tasks pose; expected one with a segmentation head" in errors[2]
    assert "--pose-model: seg_h-4 holds a model with tasks seg; expected one with a pose head" in errors[3]
    assert "fp16 on torch (cpu) needs a CUDA device" in errors[4]


def test_results_are_coco_format_in_image_pixels(tmp_path: Path) -> None:
    image = np.zeros((30, 40, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    poses = np.zeros((1, 17, 3), np.float32)
    poses[:, :, 0], poses[:, :, 1], poses[:, :, 2] = 12.5, 7.0, 0.9
    seg = np.zeros((30, 40), np.int64)
    seg[:10, :10] = 11

    def stub(images: list) -> list:
        return [Prediction(poses, np.array([0.8], np.float32), seg) for _ in images]

    run = predict_media([stub], FrameSource(tmp_path / "a.png"), tmp_path / "out", progress=False)
    results = json.loads((tmp_path / "out" / "poses.json").read_text())
    assert run.frames == 1 and len(results) == 1
    assert results[0]["image_id"] == 0 and results[0]["category_id"] == 1 and results[0]["score"] == pytest.approx(0.8)
    assert results[0]["keypoints"][:3] == pytest.approx([12.5, 7.0, 0.9]) and len(results[0]["keypoints"]) == 51
    assert class_pixel_counts(seg) == {"road": 1100, "person": 100}


def test_channels_last_predicts_the_same() -> None:
    model = create_model("seg_h-4").eval()
    image = np.random.default_rng(2).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    plain = Predictor(model, input_size=64, channels_last=False)(image).seg
    assert np.array_equal(Predictor(model, input_size=64)(image).seg, plain)  # channels-last is the default
