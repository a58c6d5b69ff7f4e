"""Drawing predictions: skeleton overlays and Cityscapes-palette segmentation overlays."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from cityscapesscripts.helpers.labels import trainId2label
from PIL import Image, ImageDraw

from mtl_ehrnet.data.skeleton import COCO_SKELETON

# Distinct, saturated colours cycled over people.
PERSON_COLOURS: Tuple[Tuple[int, int, int], ...] = (
    (255, 56, 56), (56, 255, 56), (56, 56, 255), (255, 200, 0), (255, 0, 255), (0, 255, 255),
    (255, 128, 0), (128, 0, 255), (0, 128, 255), (128, 255, 0),
)


def cityscapes_palette() -> np.ndarray:
    """(256, 3) uint8 colour of each train id (Cityscapes' own colours); unused ids are black."""
    palette = np.zeros((256, 3), np.uint8)
    for train_id, label in trainId2label.items():
        if 0 <= train_id < 255:
            palette[train_id] = label.color
    return palette


def colorize(class_map: np.ndarray, palette: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours (default: Cityscapes palette)."""
    palette = cityscapes_palette() if palette is None else np.asarray(palette, np.uint8)
    return palette[np.clip(np.asarray(class_map), 0, len(palette) - 1)]


def overlay_segmentation(
    image: np.ndarray, class_map: np.ndarray, alpha: float = 0.5, palette: Optional[np.ndarray] = None
) -> np.ndarray:
    """Blends the colourised class map over the image.

    Args:
        image: (H, W, 3) uint8 RGB.
        class_map: (H, W) class ids.
        alpha: weight of the colours (0 keeps the image, 1 shows only the colours).
        palette: (N, 3) colours by class id; default Cityscapes.

    Returns:
        (H, W, 3) uint8.
    """
    image = np.asarray(image)
    if image.shape[:2] != np.shape(class_map):
        raise ValueError(f"image {image.shape[:2]} and class map {np.shape(class_map)} differ in size")
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(class_map, palette).astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def draw_poses(
    image: np.ndarray,
    poses: np.ndarray,
    scores: Optional[Sequence[float]] = None,
    *,
    min_score: float = 0.0,
    min_value: float = 0.1,
    skeleton: Sequence[Tuple[int, int]] = COCO_SKELETON,
    radius: int = 3,
    width: int = 2,
) -> np.ndarray:
    """Draws each pose's joints and limbs, one colour per person.

    Args:
        image: (H, W, 3) uint8 RGB (not modified).
        poses: (N, K, 3) (x, y, value) in image pixels, as ``Predictor`` returns them.
        scores: (N,) pose scores; poses below ``min_score`` are skipped.
        min_value: joints with a lower value are not drawn (nor their limbs).
        skeleton: limbs as joint index pairs.
        radius: joint dot radius in pixels.
        width: limb line width in pixels.

    Returns:
        (H, W, 3) uint8 copy with the skeletons drawn.
    """
    canvas = Image.fromarray(np.asarray(image, np.uint8).copy())
    pen = ImageDraw.Draw(canvas)
    poses = np.asarray(poses, np.float64)
    for n, pose in enumerate(poses):
        if scores is not None and scores[n] < min_score:
            continue
        colour = PERSON_COLOURS[n % len(PERSON_COLOURS)]
        shown = pose[:, 2] >= min_value
        for a, b in skeleton:
            if a < len(pose) and b < len(pose) and shown[a] and shown[b]:
                pen.line([tuple(pose[a, :2]), tuple(pose[b, :2])], fill=colour, width=width)
        for x, y, _ in pose[shown]:
            pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255))
    return np.asarray(canvas)
