"""One entry point for classifier data: find the layout under a folder and open its splits."""
from __future__ import annotations

from pathlib import Path
from typing import List, NamedTuple, Optional, Union

from torch.utils.data import Dataset

from mtl_ehrnet.data.cifar import Cifar100, ImageTransform, find_cifar_root
from mtl_ehrnet.data.image_folder import ImageFolder

PathLike = Union[str, Path]
# ImageFolder: the training split and the first of these that exists as the evaluation split.
TRAIN_DIR = "train"
EVAL_DIRS = ("val", "test")


class ClassificationData(NamedTuple):
    """``layout`` (``"imagefolder"`` or ``"cifar100"``), the splits and the class names."""

    layout: str
    train: Dataset
    val: Optional[Dataset]
    classes: List[str]


def detect_layout(root: PathLike) -> str:
    """``"cifar100"`` when ``root`` (or ``root/cifar-100-python``) holds ``train`` and ``meta`` files,
    ``"imagefolder"`` when it holds a ``train/`` folder.

    Raises:
        FileNotFoundError: neither layout is found (the message says what was expected).
    """
    root = Path(root)
    if find_cifar_root(root) is not None:
        return "cifar100"
    if (root / TRAIN_DIR).is_dir():
        return "imagefolder"
    raise FileNotFoundError(
        f"no classification data under {root}: expected an ImageFolder layout ({root}/train/<class>/<image>, "
        f"optionally {root}/val/<class>/<image>) or the CIFAR-100 python layout "
        f"({root}/cifar-100-python/{{train,test,meta}})"
    )


def open_classification_data(
    root: PathLike, train_transform: ImageTransform, eval_transform: ImageTransform
) -> ClassificationData:
    """Opens the training split and, when present, the evaluation split (``val``/``test``; CIFAR ``test``)."""
    root = Path(root)
    layout = detect_layout(root)
    if layout == "cifar100":
        train = Cifar100(root, "train", train_transform)
        val = Cifar100(root, "test", eval_transform)
        return ClassificationData(layout, train, val, train.classes)
    folder = ImageFolder(root / TRAIN_DIR, train_transform)
    val_dir = next((root / d for d in EVAL_DIRS if (root / d).is_dir()), None)
    val = ImageFolder(val_dir, eval_transform, classes=folder.classes) if val_dir is not None else None
    return ClassificationData(layout, folder, val, folder.classes)
