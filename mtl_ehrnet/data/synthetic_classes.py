"""A generated image-classification set, for classifier pretraining without ImageNet or CIFAR.

Class k is a shape (8 kinds) filled with a texture (4 kinds): k -> (SHAPES[k // 4], TEXTURES[k % 4]),
so up to 32 classes; the first classes differ in texture before they differ in shape. Everything else
is noise the classifier must learn to ignore: position, size and rotation of the shape, its two
colours, the texture's period and angle, the background colour gradient, clutter lines and pixel noise.
Every image comes from its own random stream ``(seed, split, class, index)``: the same seed writes the
same bytes.

Layouts: ``imagefolder`` (``root/{train,val}/<class>/<index>.png``) or ``cifar`` (the CIFAR-100
python layout via :func:`mtl_ehrnet.data.cifar.write_cifar100`, 32x32 images, class names padded to 100).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from mtl_ehrnet.data.cifar import NUM_FINE, write_cifar100

PathLike = Union[str, Path]
SHAPES = ("disc", "square", "triangle", "cross", "ring", "diamond", "star", "hexagon")
TEXTURES = ("solid", "stripes", "checker", "dots")
MAX_CLASSES = len(SHAPES) * len(TEXTURES)
LAYOUTS = ("imagefolder", "cifar")
_SPLITS = {"train": 0, "val": 1}
_SUPERSAMPLE = 4  # shapes are drawn at 4x and reduced, for anti-aliased edges


def class_names(classes: int) -> List[str]:
    """``["00_disc_solid", "01_disc_stripes", ...]`` for the first ``classes`` classes."""
    if not 2 <= classes <= MAX_CLASSES:
        raise ValueError(f"classes must be 2..{MAX_CLASSES} (8 shapes x 4 textures), got {classes}")
    return [f"{k:02d}_{SHAPES[k // len(TEXTURES)]}_{TEXTURES[k % len(TEXTURES)]}" for k in range(classes)]


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> List[Tuple[float, float]]:
    if shape == "square":
        corners = [(i * 90 + 45, r) for i in range(4)]
    elif shape == "diamond":
        corners = [(i * 90, r * (1.0 if i % 2 == 0 else 0.6)) for i in range(4)]
    elif shape == "triangle":
        corners = [(i * 120 - 90, r) for i in range(3)]
    elif shape == "hexagon":
        corners = [(i * 60, r) for i in range(6)]
    elif shape == "star":
        corners = [(i * 36 - 90, r if i % 2 == 0 else 0.45 * r) for i in range(10)]
    elif shape == "cross":
        w = 0.35 * r
        pts = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r),
               (-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)]
        corners = [(math.degrees(math.atan2(y, x)), math.hypot(x, y)) for x, y in pts]
    else:
        raise ValueError(shape)
    return [(cx + d * math.cos(math.radians(a) + angle), cy + d * math.sin(math.radians(a) + angle))
            for a, d in corners]


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    big = size * _SUPERSAMPLE
    r = rng.uniform(0.22, 0.4) * big
    cx, cy = (rng.uniform(r, big - r) for _ in range(2))
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if shape in ("disc", "ring"):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        if shape == "ring":
            inner = rng.uniform(0.45, 0.65) * r
            draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=255)
    return np.asarray(mask.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


def _texture(texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """1 where the shape's first colour shows, 0 for its second. Shape (size, size)."""
    if texture == "solid":
        return np.ones((size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(size / 10, size / 5)
    angle = rng.uniform(0, math.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    if texture == "stripes":
        return (np.floor(u / period) % 2).astype(np.float32)
    if texture == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    du, dv = u / period - np.round(u / period), v / period - np.round(v / period)
    return (np.hypot(du, dv) > 0.3).astype(np.float32)  # dots


def _colour(rng: np.random.Generator, away_from: np.ndarray = None, distance: float = 90.0) -> np.ndarray:  # type: ignore[assignment]
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        if away_from is None or np.abs(colour - away_from).sum() > distance:
            return colour
    return 255.0 - away_from


def render_class_image(class_index: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of class ``class_index``.

    Returns:
        uint8 (size, size, 3) RGB.
    """
    shape, texture = SHAPES[class_index // len(TEXTURES)], TEXTURES[class_index % len(TEXTURES)]
    base = _colour(rng)
    gradient = rng.uniform(-40, 40, 3)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    field = np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None]
    image = base + field[..., None] * gradient
    clutter = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(clutter)
    for _ in range(int(rng.integers(0, 4))):
        draw.line([tuple(rng.uniform(0, size, 2)), tuple(rng.uniform(0, size, 2))], fill=255, width=1)
    lines = np.asarray(clutter, dtype=np.float32)[..., None] / 255.0
    image = image * (1 - lines) + lines * _colour(rng)
    first = _colour(rng, away_from=base)
    second = _colour(rng, away_from=first)
    pattern = _texture(texture, size, rng)[..., None]
    fill = pattern * first + (1 - pattern) * second
    mask = _shape_mask(shape, size, rng)[..., None]
    image = image * (1 - mask) + fill * mask + rng.normal(0, 8, (size, size, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _images(seed: int, split: str, class_index: int, count: int, size: int) -> List[np.ndarray]:
    out = []
    for i in range(count):
        rng = np.random.default_rng([seed, _SPLITS[split], class_index, i])
        out.append(render_class_image(class_index, size, rng))
    return out


def generate_synthetic_classes(
    root: PathLike,
    classes: int = 10,
    images_per_class: int = 100,
    size: int = 64,
    seed: int = 0,
    val_fraction: float = 0.2,
    layout: str = "imagefolder",
    progress: bool = False,
) -> Path:
    """Writes the set; ``images_per_class`` per class in train and ``round(val_fraction * it)`` in val.

    Args:
        root: output folder.
        classes: 2..32.
        images_per_class: training images per class.
        size: image side (``cifar``: always 32).
        seed: dataset seed.
        val_fraction: validation images per class, relative to training images (at least 1).
        layout: ``"imagefolder"`` (``root/train``, ``root/val``) or ``"cifar"`` (``root/cifar-100-python``,
            splits ``train`` and ``test``).

    Returns:
        the folder to pass to ``train-backbone --data``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if images_per_class < 1 or size < 16:
        raise ValueError(f"images_per_class must be >= 1 and size >= 16 (got {images_per_class}, {size})")
    names = class_names(classes)
    root = Path(root)
    counts = {"train": images_per_class, "val": max(1, round(val_fraction * images_per_class))}
    side = 32 if layout == "cifar" else size
    splits = {}
    for split, count in counts.items():
        images, labels = [], []
        for k in tqdm(range(classes), desc=f"synth-classes {split}", disable=not progress, leave=False):
            drawn = _images(seed, split, k, count, side)
            if layout == "imagefolder":
                folder = root / split / names[k]
                folder.mkdir(parents=True, exist_ok=True)
                for i, image in enumerate(drawn):
                    Image.fromarray(image).save(folder / f"{i:05d}.png", optimize=False)
            images += drawn
            labels += [k] * count
        splits["test" if split == "val" else split] = (np.stack(images), np.asarray(labels))
    if layout == "cifar":
        padded = names + [f"unused_{i:02d}" for i in range(classes, NUM_FINE)]
        write_cifar100(root, splits, padded)
    return root
