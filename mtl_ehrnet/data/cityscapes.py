"""Cityscapes semantic segmentation in its standard layout, mapped to the 19 train ids.

``root/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` pairs with
``root/gtFine/<split>/<city>/<name>_gtFine_labelIds.png``. Label ids go to train ids through
``cityscapesscripts.helpers.labels`` (ignored classes -> 255). A missing label file, a label map whose
size differs from its image, a colour PNG where an id map is expected, or an id that is not in the
Cityscapes table raises an error naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS
from PIL import Image

from mtl_ehrnet.data.fingerprint import files_digest, text_digest
from mtl_ehrnet.data.image_io import read_label_ids, read_rgb
from mtl_ehrnet.data.raw_dataset import RawDataset
from mtl_ehrnet.data.sample import IGNORE_INDEX, RawSample

PathLike = Union[str, Path]
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
NUM_CLASSES = 19
CLASS_NAMES: Tuple[str, ...] = tuple(
    label.name for label in sorted(CITYSCAPES_LABELS, key=lambda l: l.trainId) if 0 <= label.trainId < 255
)


def _lookup_table() -> Tuple[np.ndarray, np.ndarray]:
    ids = [label.id for label in CITYSCAPES_LABELS if label.id >= 0]  # 'license plate' has id -1
    table = np.full(max(ids) + 1, IGNORE_INDEX, dtype=np.uint8)
    known = np.zeros(max(ids) + 1, dtype=bool)
    for label in CITYSCAPES_LABELS:
        if label.id >= 0:
            table[label.id] = label.trainId if 0 <= label.trainId < 255 else IGNORE_INDEX
            known[label.id] = True
    return table, known


_TRAIN_ID_TABLE, _KNOWN_IDS = _lookup_table()
# Every id from 0 to the largest is in the table, so an 8-bit map is valid when its maximum is.
_CONTIGUOUS_IDS = bool(_KNOWN_IDS.all())
# Pillow's point() maps an 8-bit image through a 256-entry table in one C pass, about 8x faster than
# numpy's fancy indexing on a 2048x1024 frame.
_POINT_TABLE = _TRAIN_ID_TABLE.tolist() + [IGNORE_INDEX] * (256 - _TRAIN_ID_TABLE.size)


def _uint8_train_ids(label_ids: np.ndarray) -> np.ndarray:
    if label_ids.ndim != 2:
        return _TRAIN_ID_TABLE[label_ids]
    return np.array(Image.fromarray(np.ascontiguousarray(label_ids), "L").point(_POINT_TABLE))


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Maps Cityscapes label ids to train ids (0..18, 255 for ignored classes).

    Args:
        label_ids: integer array of any shape with ids from the Cityscapes table.

    Returns:
        uint8 array of the same shape.

    Raises:
        ValueError: listing the ids that are not in the Cityscapes table.
    """
    label_ids = np.asarray(label_ids)
    if not np.issubdtype(label_ids.dtype, np.integer):
        raise ValueError(f"label ids must be integers, got dtype {label_ids.dtype}")
    if label_ids.dtype == np.uint8 and _CONTIGUOUS_IDS and label_ids.size and label_ids.max() < _KNOWN_IDS.size:
        return _uint8_train_ids(label_ids)
    in_range = (label_ids >= 0) & (label_ids < _KNOWN_IDS.size)
    bad = ~in_range
    bad[in_range] = ~_KNOWN_IDS[label_ids[in_range]]
    if bad.any():
        unknown = np.unique(label_ids[bad])
        raise ValueError(f"label ids {unknown[:10].tolist()} are not in the Cityscapes label table "
                         f"(valid: 0..{_KNOWN_IDS.size - 1})")
    return _TRAIN_ID_TABLE[label_ids]


def list_cityscapes_pairs(root: PathLike, split: str) -> List[Tuple[Path, Path]]:
    """Every (image, ``*_gtFine_labelIds.png``) pair of a split, sorted by image path.

    Raises:
        FileNotFoundError: the split directory or a label file is missing.
        ValueError: the split directory holds no ``*_leftImg8bit.png`` image.
    """
    root = Path(root)
    image_root = root / "leftImg8bit" / split
    if not image_root.is_dir():
        raise FileNotFoundError(f"Cityscapes image directory not found: {image_root}")
    images = sorted(image_root.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise ValueError(f"no */*{IMAGE_SUFFIX} images under {image_root}")
    pairs = []
    for image in images:
        stem = image.name[: -len(IMAGE_SUFFIX)]
        label = root / "gtFine" / split / image.parent.name / f"{stem}{LABEL_SUFFIX}"
        if not label.is_file():
            raise FileNotFoundError(f"label file not found: {label} (for image {image})")
        pairs.append((image, label))
    return pairs


def read_train_ids(path: PathLike) -> np.ndarray:
    """Reads a ``*_labelIds.png`` and maps it to train ids; errors name the file.

    Returns:
        uint8 (H, W).
    """
    try:
        return to_train_ids(read_label_ids(path))
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from err


class Cityscapes(RawDataset):
    """Cityscapes fine annotations; samples carry segmentation labels only.

    ``image_id`` is the index of the pair in :func:`list_cityscapes_pairs` order.

    Args:
        root: dataset root holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``.
        transform: RawSample -> sample dict (default: ``TestTransform(512)``).
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        transform: Optional[Callable[[RawSample], Dict[str, torch.Tensor]]] = None,
    ) -> None:
        super().__init__(transform)
        self.root = Path(root)
        self.split = split
        self.pairs = list_cityscapes_pairs(self.root, split)

    def __len__(self) -> int:
        return len(self.pairs)

    def _describe(self) -> Dict[str, str]:
        return {"images": text_digest(str(image.relative_to(self.root)) for image, _ in self.pairs),
                "labels": files_digest(label for _, label in self.pairs)}

    def load(self, index: int) -> RawSample:
        """Image and train-id map (H, W) of pair ``index``."""
        image_path, label_path = self.pairs[index]
        image = read_rgb(image_path)
        seg = read_train_ids(label_path)
        if seg.shape != image.shape[:2]:
            raise ValueError(f"label {label_path} is {seg.shape[1]}x{seg.shape[0]} but image {image_path} "
                             f"is {image.shape[1]}x{image.shape[0]}")
        return RawSample(image=image, image_id=index, seg=seg)
