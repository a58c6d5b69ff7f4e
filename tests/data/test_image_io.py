"""Every image mode loads as 8-bit RGB; bad files fail with their name."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mtl_ehrnet.data.image_io import read_label_ids, read_rgb


def _image(mode: str) -> Image.Image:
    rgb = Image.fromarray(np.tile(np.arange(0, 240, 10, dtype=np.uint8), (16, 1))[:, :, None].repeat(3, 2))
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if mode == "I;16":
        return Image.fromarray((np.asarray(rgb)[:, :, 0].astype(np.uint16) * 257))
    return rgb.convert(mode)


@pytest.mark.parametrize("mode, fmt", [
    ("RGB", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("1", "PNG"),
    ("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"),
])
def test_every_mode_loads_as_rgb(tmp_path, mode, fmt):
    path = tmp_path / f"im.{fmt.lower()}"
    _image(mode).save(path, fmt)
    image = read_rgb(path)
    assert image.shape == (16, 24, 3) and image.dtype == np.uint8
    if mode not in ("1", "CMYK"):  # the gray ramp survives, up to JPEG/palette loss
        assert abs(int(image[0, 23, 0]) - 230) <= 12 and image[0, 0, 0] <= 12


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_rgb(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="cannot decode image .*broken.png"):
        read_rgb(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="cannot decode image .*broken.png"):
        read_label_ids(tmp_path / "broken.png")


def test_palette_label_map_reads_indices(tmp_path):
    labels = Image.fromarray(np.array([[7, 24], [26, 8]], np.uint8), "L").convert("P")
    labels.save(tmp_path / "p.png")
    assert read_label_ids(tmp_path / "p.png").tolist() == [[7, 24], [26, 8]]
