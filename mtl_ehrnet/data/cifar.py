"""CIFAR-100 in its "python version" layout, read without letting the files run code.

Layout (as downloaded, ``cifar-100-python.tar.gz`` unpacked)::

    cifar-100-python/train   pickled dict: b"data" (50000, 3072) uint8 (R plane, G plane, B plane of
    cifar-100-python/test    32x32, row-major), b"fine_labels", b"coarse_labels", b"filenames" (lists)
    cifar-100-python/meta    pickled dict: b"fine_label_names", b"coarse_label_names" (lists of bytes)

The files were pickled by Python 2, so their strings come back as bytes (``encoding="bytes"``). A pickle
can name any importable callable and call it while loading; :class:`RestrictedUnpickler` admits only
what plain containers and numpy arrays need and refuses every other global with an error naming the
file and the global, before anything is called.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

PathLike = Union[str, Path]
CIFAR_DIR = "cifar-100-python"
SPLITS = ("train", "test")
IMAGE_SHAPE = (32, 32, 3)
NUM_FINE, NUM_COARSE = 100, 20
ImageTransform = Callable[[np.ndarray], torch.Tensor]


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes into protocol-2 pickles, limited to latin-1."""
    if encoding.lower().replace("-", "").replace("_", "") != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r} (only latin1 is admitted)")
    return text.encode("latin1")


def _allowed_globals() -> Dict[tuple, Any]:
    try:  # numpy >= 2 moved numpy.core to numpy._core; pickles name either
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: Dict[tuple, Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                 ("_codecs", "encode"): _latin1_encode}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, numbers, strings, bytes and numpy arrays.

    ``find_class`` is the only way a pickle reaches a callable; it returns the few numpy array
    constructors (``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer``) and a latin-1-only
    ``_codecs.encode`` and raises :class:`pickle.UnpicklingError` for everything else.
    """

    def __init__(self, file: Any, path: PathLike, encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding)
        self.path = Path(path)
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        allowed = self._allowed.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"{self.path}: refusing to load global '{module}.{name}': a CIFAR file may only hold plain "
                "containers and numpy arrays (a crafted pickle could run code)"
            )
        return allowed


def read_pickle(path: PathLike) -> Dict[str, Any]:
    """Reads one CIFAR pickle with :class:`RestrictedUnpickler`; bytes keys become str.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is corrupt, not a dict, or names a global that is not admitted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file not found: {path}")
    try:
        with path.open("rb") as handle:
            data = RestrictedUnpickler(handle, path).load()
    except pickle.UnpicklingError as err:
        raise ValueError(f"cannot read CIFAR file {path}: {err}") from err
    except Exception as err:  # truncated or garbage bytes surface as many exception types
        raise ValueError(f"cannot read CIFAR file {path}: corrupt pickle ({type(err).__name__}: {err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"CIFAR file {path} holds a {type(data).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}


class CifarSplit(NamedTuple):
    """One split in memory: ``images`` (N, 32, 32, 3) uint8 RGB, ``fine`` / ``coarse`` (N,) int64."""

    images: np.ndarray
    fine: np.ndarray
    coarse: np.ndarray


def find_cifar_root(root: PathLike) -> Optional[Path]:
    """The folder holding ``train``, ``test`` and ``meta``: ``root`` itself or ``root/cifar-100-python``."""
    root = Path(root)
    for candidate in (root / CIFAR_DIR, root):
        if (candidate / "meta").is_file() and (candidate / "train").is_file():
            return candidate
    return None


def _labels(data: Dict[str, Any], key: str, count: int, limit: int, path: Path) -> np.ndarray:
    if key not in data:
        raise ValueError(f"CIFAR file {path} has no {key!r} entry (keys: {sorted(data)})")
    try:
        labels = np.asarray(data[key], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"CIFAR file {path}: {key!r} is not a list of integers ({err})") from err
    if labels.shape != (count,):
        raise ValueError(f"CIFAR file {path}: {key!r} has shape {labels.shape}, expected ({count},) like 'data'")
    bad = np.flatnonzero((labels < 0) | (labels >= limit))
    if bad.size:
        raise ValueError(f"CIFAR file {path}: {key}[{bad[0]}] = {labels[bad[0]]} is outside 0..{limit - 1}")
    return labels


def read_cifar100_split(root: PathLike, split: str) -> CifarSplit:
    """Reads ``train`` or ``test`` of a CIFAR-100 python-layout folder and checks every entry.

    Raises:
        ValueError: unknown split, or a file whose arrays have the wrong type, shape or label range
            (the message names the file and the entry).
    """
    if split not in SPLITS:
        raise ValueError(f"CIFAR-100 split must be one of {SPLITS}, got {split!r}")
    base = find_cifar_root(root)
    if base is None:
        raise FileNotFoundError(f"no CIFAR-100 python layout under {root} (expected {CIFAR_DIR}/{{train,test,meta}})")
    path = base / split
    data = read_pickle(path)
    pixels = data.get("data")
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3072:
        described = (f"{pixels.dtype} array of shape {pixels.shape}" if isinstance(pixels, np.ndarray)
                     else type(pixels).__name__)
        raise ValueError(f"CIFAR file {path}: 'data' must be a uint8 array of shape (N, 3072), got {described}")
    count = pixels.shape[0]
    images = np.ascontiguousarray(pixels.reshape(count, 3, 32, 32).transpose(0, 2, 3, 1))
    fine = _labels(data, "fine_labels", count, NUM_FINE, path)
    coarse = (_labels(data, "coarse_labels", count, NUM_COARSE, path) if "coarse_labels" in data
              else np.zeros(count, np.int64))
    return CifarSplit(images, fine, coarse)


def read_cifar100_classes(root: PathLike) -> List[str]:
    """The 100 fine label names from ``meta``."""
    base = find_cifar_root(root)
    if base is None:
        raise FileNotFoundError(f"no CIFAR-100 python layout under {root}")
    names = read_pickle(base / "meta").get("fine_label_names")
    if not isinstance(names, list) or len(names) != NUM_FINE:
        raise ValueError(f"CIFAR file {base / 'meta'}: 'fine_label_names' must be a list of {NUM_FINE} names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


class Cifar100(Dataset):
    """CIFAR-100 (fine labels) as classification samples.

    Args:
        root: folder holding ``cifar-100-python/`` (or that folder itself).
        split: ``"train"`` or ``"test"``.
        transform: uint8 (H, W, 3) RGB -> float (3, S, S) tensor; default: to [0, 1] without resizing.

    Item: ``{"image": (3, S, S) float32, "label": () int64}``.
    """

    def __init__(self, root: PathLike, split: str = "train", transform: Optional[ImageTransform] = None) -> None:
        self.split = read_cifar100_split(root, split)
        self.classes = read_cifar100_classes(root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split.fine)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        image = self.split.images[index]
        tensor = self.transform(image) if self.transform else torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
        return {"image": tensor, "label": torch.tensor(int(self.split.fine[index]), dtype=torch.int64)}


def write_cifar100(
    root: PathLike,
    splits: Dict[str, tuple],
    fine_names: Sequence[str],
) -> Path:
    """Writes a CIFAR-100 python-layout folder exactly as the real one is stored.

    Args:
        root: the folder receives ``cifar-100-python/{train,test,meta}``.
        splits: ``{"train": (images, fine_labels), "test": (...)}``; images (N, 32, 32, 3) uint8 RGB,
            fine labels (N,) ints in 0..99.
        fine_names: 100 class names.

    Returns:
        the ``cifar-100-python`` folder. Dicts with bytes keys, lists of ints and bytes, the pixel array
        as (N, 3072) uint8 planes, pickled at protocol 2 (the real files' protocol).
    """
    if len(fine_names) != NUM_FINE:
        raise ValueError(f"CIFAR-100 needs {NUM_FINE} fine class names, got {len(fine_names)}")
    base = Path(root) / CIFAR_DIR
    base.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in splits.items():
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"{split}: images must be (N, 32, 32, 3) uint8, got {images.shape}")
        fine = [int(v) for v in labels]
        entry = {
            b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(len(fine))],
            b"batch_label": f"{split}ing batch 1 of 1".encode(),
            b"fine_labels": fine,
            b"coarse_labels": [v * NUM_COARSE // NUM_FINE for v in fine],
            b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072).copy(),
        }
        with (base / split).open("wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    meta = {b"fine_label_names": [n.encode() for n in fine_names],
            b"coarse_label_names": [f"superclass_{i}".encode() for i in range(NUM_COARSE)]}
    with (base / "meta").open("wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return base
