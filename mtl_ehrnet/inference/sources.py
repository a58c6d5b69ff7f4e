"""What ``predict`` reads: one image, a folder of images, or a video, as a stream of numbered frames."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Union

import numpy as np

from mtl_ehrnet.data.image_io import read_rgb
from mtl_ehrnet.inference.video import VideoReader, is_video

PathLike = Union[str, Path]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


@dataclass
class Frame:
    """One input image: ``index`` (the image id in the results; the frame number of a video), the file
    it came from (``name``: the image file name, or ``<video stem>_<index>``) and (H, W, 3) uint8 RGB."""

    index: int
    name: str
    image: np.ndarray


class FrameSource:
    """Frames of an image file, a folder of images (sorted by name) or a video file.

    Attributes:
        kind: ``"image"``, ``"folder"`` or ``"video"``.
        fps: the video's frame rate (None for images).
        size: (H, W) of a video's frames (None for images).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a folder without images, a file that is neither an image nor a readable video.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.fps: Optional[float] = None
        self.size = None
        self._video: Optional[VideoReader] = None
        self._files: List[Path] = []
        if not self.path.exists():
            raise FileNotFoundError(f"input not found: {self.path}")
        if self.path.is_dir():
            self.kind = "folder"
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self._files:
                raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.path}")
        elif is_video(self.path):
            self.kind = "video"
            self._video = VideoReader(self.path)
            self.fps, self.size = self._video.fps, self._video.size
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            self.kind = "image"
            self._files = [self.path]
        else:
            raise ValueError(f"cannot tell what {self.path} is: expected an image ({', '.join(IMAGE_SUFFIXES)}), "
                             f"a video or a folder of images")

    def __iter__(self) -> Iterator[Frame]:
        if self._video is not None:
            for index, image in enumerate(self._video):
                yield Frame(index, f"{self.path.stem}_{index:06d}", image)
            return
        for index, file in enumerate(self._files):
            yield Frame(index, file.name, read_rgb(file))

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
