"""Reading images and label maps with errors that name the file.

Every loader goes through these two functions so that a bad file fails in the main process or a
DataLoader worker with the path in the message, never deep inside numpy with no context.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

PathLike = Union[str, Path]


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot decode image {path}: {err}") from err
    return image


def read_rgb(path: PathLike) -> np.ndarray:
    """Reads any image as 8-bit RGB.

    Grayscale (8/16/32-bit), palette, CMYK, LA and RGBA images are accepted: alpha is dropped (not
    composited), palettes are expanded and 16-bit grayscale is scaled to 8 bits.

    Args:
        path: image file.

    Returns:
        uint8 array of shape (H, W, 3).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be decoded or has an unsupported mode.
    """
    path = Path(path)
    image = _open(path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit files use the full 0..65535 range; 32-bit ones are treated the same way.
        scale = 255.0 / 65535.0 if values.max(initial=0) > 255 else 1.0
        gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "RGB":  # convert() would copy it once more
        return np.asarray(image)
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot convert image {path} (mode {image.mode}) to RGB: {err}") from err


def read_label_ids(path: PathLike) -> np.ndarray:
    """Reads a single-channel label map (8- or 16-bit PNG) as integers.

    Args:
        path: label file, e.g. ``*_gtFine_labelIds.png``.

    Returns:
        (H, W) array: uint8 for 8-bit and palette maps (the ids as stored), int32 for 16/32-bit ones.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be decoded or is not single-channel (e.g. a colour PNG).
    """
    path = Path(path)
    image = _open(path)
    if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise ValueError(
            f"label map {path} has mode {image.mode}; expected a single-channel id image "
            "(is this a *_color.png instead of *_labelIds.png?)"
        )
    # A palette label map stores the ids as palette indices: read the indices, not the colours.
    if image.mode in ("L", "P"):
        return np.asarray(image)
    return np.asarray(image, dtype=np.int32)
