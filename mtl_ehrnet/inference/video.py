"""Video files in and out (PyAV: FFmpeg's own libraries, so any format FFmpeg reads and H.264 MP4 out).

Frames are uint8 RGB arrays (H, W, 3) in both directions. Errors name the file.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np

PathLike = Union[str, Path]
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")


class VideoReader:
    """Decodes the first video stream of a file, frame by frame.

    Attributes:
        fps: the stream's average frame rate (25 when the container does not say).
        frames: frame count announced by the container (0 when unknown).
        size: (height, width) of the frames.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable video (corrupt, not a video, no video stream).
    """

    def __init__(self, path: PathLike) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        try:
            self._container = av.open(str(self.path), mode="r")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read video {self.path}: {err}") from err
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"cannot read video {self.path}: it has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 25.0
        self.frames = int(self._stream.frames or 0)
        self.size = (int(self._stream.codec_context.height), int(self._stream.codec_context.width))

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        count = 0
        try:
            for frame in self._container.decode(self._stream):
                count += 1
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as err:
            raise ValueError(f"cannot decode video {self.path} after {count} frame(s): {err}") from err
        if count == 0:
            raise ValueError(f"cannot read video {self.path}: no frame could be decoded")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class VideoWriter:
    """Encodes RGB frames to a video file (H.264 in MP4 by default, yuv420p: plays everywhere).

    The frame size is fixed by the first frame; odd sides get one black row / column (4:2:0 chroma
    needs even sides).

    Args:
        path: output file; the container follows its suffix (``.mp4``, ``.mkv``, ``.avi``...).
        fps: frame rate.
        codec: FFmpeg encoder name.
        crf: H.264 quality (lower is better; 23 is FFmpeg's default).
    """

    def __init__(self, path: PathLike, fps: float, *, codec: str = "libx264", crf: int = 23) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        self._rate = Fraction(fps).limit_denominator(1001)
        self._codec, self._crf = codec, crf
        self._stream: Optional[Any] = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Appends one (H, W, 3) uint8 RGB frame."""
        import av

        frame = np.asarray(frame, np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB frame (H, W, 3), got {frame.shape}")
        height, width = frame.shape[0] + frame.shape[0] % 2, frame.shape[1] + frame.shape[1] % 2
        if self._stream is None:
            self._stream = self._container.add_stream(self._codec, rate=self._rate)
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            if self._codec == "libx264":
                self._stream.options = {"crf": str(self._crf)}
        if (height, width) != (self._stream.height, self._stream.width):
            raise ValueError(f"frame {frame.shape[:2]} differs from the video's "
                             f"{self._stream.height}x{self._stream.width}")
        if frame.shape[:2] != (height, width):
            frame = np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0)))
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flushes the encoder and finishes the file."""
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def is_video(path: PathLike) -> bool:
    """Whether ``path`` has a video file suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
