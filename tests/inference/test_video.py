"""Video in/out: what is written plays back with its frame count, size and content; bad files are named."""
from pathlib import Path

import numpy as np
import pytest

from mtl_ehrnet.inference.sources import FrameSource
from mtl_ehrnet.inference.video import VideoReader, VideoWriter


def _frames(count: int, height: int, width: int) -> list:
    # Flat grey levels: lossy coding keeps the level of each frame.
    return [np.full((height, width, 3), 20 + 30 * i, np.uint8) for i in range(count)]


def test_written_video_reads_back_frame_for_frame(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=12) as writer:
        for frame in _frames(7, 48, 64):
            writer.write(frame)
    with VideoReader(path) as reader:
        frames = list(reader)
        assert (reader.fps, reader.size, reader.frames) == (12.0, (48, 64), 7)
    assert len(frames) == 7 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert [round(float(f.mean())) for f in frames] == pytest.approx([20 + 30 * i for i in range(7)], abs=3)


def test_odd_sides_get_one_black_line_and_sizes_must_not_change(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=5) as writer:
        writer.write(np.full((45, 61, 3), 200, np.uint8))
        with pytest.raises(ValueError, match="differs from the video's 46x62"):
            writer.write(np.zeros((40, 40, 3), np.uint8))
    with VideoReader(path) as reader:
        assert reader.size == (46, 62) and len(list(reader)) == 1


def test_unreadable_videos_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoReader(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 50)
    with pytest.raises(ValueError, match=r"cannot read video .*garbage\.mp4"):
        VideoReader(garbage)


def test_frame_source_kinds(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("b.png", "a.jpg"):
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("skip me")
    source = FrameSource(folder)
    assert source.kind == "folder" and [(f.index, f.name) for f in source] == [(0, "a.jpg"), (1, "b.png")]
    assert FrameSource(folder / "b.png").kind == "image"
    with pytest.raises(ValueError, match="cannot tell what .*notes.txt is"):
        FrameSource(folder / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        FrameSource(tmp_path / "empty")
