"""Image classification data in the ImageFolder layout (ImageNet's ``train/<class>/<image>``)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from mtl_ehrnet.data.image_io import read_rgb

PathLike = Union[str, Path]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
ImageTransform = Callable[[np.ndarray], torch.Tensor]


def list_class_folders(root: PathLike) -> List[str]:
    """Sorted names of the class sub-folders of ``root`` (hidden folders skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageFolder(Dataset):
    """``root/<class name>/<image file>`` as classification samples; class i is the i-th sorted folder.

    Args:
        root: one split, e.g. ``imagenet/train``.
        transform: uint8 (H, W, 3) RGB -> float (3, S, S) tensor; default: to [0, 1] without resizing.
        classes: the class list to index by (give the training split's to a validation split, so both
            number classes alike); default: this folder's sub-folders.

    Item: ``{"image": (3, S, S) float32, "label": () int64}``. An unreadable image raises a ValueError
    naming its file when it is loaded.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no class folder or no image; a folder not in ``classes``.
    """

    def __init__(
        self, root: PathLike, transform: Optional[ImageTransform] = None, classes: Optional[Sequence[str]] = None
    ) -> None:
        self.root = Path(root)
        folders = list_class_folders(self.root)
        self.classes: List[str] = list(classes) if classes is not None else folders
        unknown = sorted(set(folders) - set(self.classes))
        if unknown:
            raise ValueError(f"{self.root} has class folders {unknown[:5]} that are not among the "
                             f"{len(self.classes)} training classes")
        index = {name: i for i, name in enumerate(self.classes)}
        self.samples: List[Tuple[Path, int]] = [
            (path, index[folder])
            for folder in folders
            for path in sorted((self.root / folder).rglob("*"))
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
        ]
        if not self.classes:
            raise ValueError(f"no class folders under {self.root} (expected {self.root}/<class>/<image>)")
        if not self.samples:
            raise ValueError(f"no images with extensions {IMAGE_EXTENSIONS} under {self.root}/<class>/")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        path, label = self.samples[index]
        image = read_rgb(path)
        tensor = self.transform(image) if self.transform else torch.tensor(image).permute(2, 0, 1).float() / 255.0
        return {"image": tensor, "label": torch.tensor(label, dtype=torch.int64)}
