"""Classifier data: ImageFolder and CIFAR-100 python layouts, the restricted unpickler, corrupt entries."""
import hashlib
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_ehrnet.data.cifar import Cifar100, RestrictedUnpickler, read_cifar100_split, read_pickle, write_cifar100
from mtl_ehrnet.data.classification_sets import detect_layout, open_classification_data
from mtl_ehrnet.data.classification_transforms import ClassificationTestTransform, ClassificationTrainTransform
from mtl_ehrnet.data.image_folder import ImageFolder
from mtl_ehrnet.data.synthetic_classes import class_names, generate_synthetic_classes

NAMES = [f"class_{i:02d}" for i in range(100)]


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def test_image_folder_layout_loads_with_train_class_indices(tmp_path: Path) -> None:
    root = generate_synthetic_classes(tmp_path, classes=3, images_per_class=4, size=24, seed=1)
    data = open_classification_data(root, ClassificationTrainTransform(20), ClassificationTestTransform(20))
    assert data.layout == "imagefolder" and data.classes == class_names(3)
    assert (len(data.train), len(data.val)) == (12, 3)
    labels = [int(data.train[i]["label"]) for i in range(len(data.train))]
    assert labels == [0] * 4 + [1] * 4 + [2] * 4
    sample = data.val[2]
    assert sample["image"].shape == (3, 20, 20) and sample["image"].dtype == torch.float32 and int(sample["label"]) == 2
    # A validation split indexes by the training classes, even with a class folder missing.
    (root / "val" / class_names(3)[0]).rename(tmp_path / "moved")
    assert int(ImageFolder(root / "val", classes=data.classes)[0]["label"]) == 1


def test_generator_is_deterministic_per_seed(tmp_path: Path) -> None:
    def digest(folder: Path) -> str:
        files = sorted(folder.rglob("*.png"))
        return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()

    a = generate_synthetic_classes(tmp_path / "a", classes=2, images_per_class=2, size=16, seed=5)
    b = generate_synthetic_classes(tmp_path / "b", classes=2, images_per_class=2, size=16, seed=5)
    c = generate_synthetic_classes(tmp_path / "c", classes=2, images_per_class=2, size=16, seed=6)
    assert digest(a) == digest(b) != digest(c)


def test_cifar_layout_round_trips_pixels_and_labels(tmp_path: Path) -> None:
    train, test = _images(6, 0), _images(2, 1)
    base = write_cifar100(tmp_path, {"train": (train, [0, 5, 99, 5, 1, 2]), "test": (test, [7, 8])}, NAMES)
    raw = pickle.loads((base / "train").read_bytes(), encoding="bytes")  # the real files' encoding
    assert raw[b"data"].shape == (6, 3072) and raw[b"data"].dtype == np.uint8
    assert raw[b"data"][0, 1024] == train[0, 0, 0, 1]  # channel planes: R (0..1023), then G
    assert detect_layout(tmp_path) == "cifar100" and detect_layout(base) == "cifar100"
    split = read_cifar100_split(tmp_path, "train")
    np.testing.assert_array_equal(split.images, train)
    data = Cifar100(tmp_path, "test")
    assert len(data) == 2 and data.classes == NAMES and int(data[1]["label"]) == 8
    torch.testing.assert_close(data[0]["image"], torch.from_numpy(test[0]).permute(2, 0, 1).float() / 255)
    sets = open_classification_data(tmp_path, ClassificationTrainTransform(40), ClassificationTestTransform(40))
    assert len(sets.classes) == 100 and sets.train[0]["image"].shape == (3, 40, 40)


def _python2_array(array: np.ndarray) -> bytes:
    """Protocol-2 opcodes of a 2-D uint8 array as numpy 1.x under Python 2 wrote them (str = bytes)."""
    out = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
    out += b"(K\x01" + b"".join(b"J" + struct.pack("<i", d) for d in array.shape) + b"\x86"
    out += b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    raw = array.tobytes()
    return out + b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb"


def test_a_python2_pickle_like_the_real_files_reads(tmp_path: Path) -> None:
    pixels = _images(2).transpose(0, 3, 1, 2).reshape(2, 3072)
    stream = b"\x80\x02}(U\x04data" + _python2_array(pixels) + b"U\x0bfine_labels]q\x01(K\x03K\x04eu."
    path = tmp_path / "train"
    path.write_bytes(stream)
    data = read_pickle(path)
    assert data["fine_labels"] == [3, 4]
    np.testing.assert_array_equal(data["data"], pixels)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    base = write_cifar100(tmp_path, {"train": (_images(2), [0, 1]), "test": (_images(1), [0])}, NAMES)
    (base / "train").write_bytes(pickle.dumps({b"data": _RunsCode(marker)}, protocol=2))
    with pytest.raises(ValueError, match=r"train: refusing to load global '(posix|os|nt)\.system'"):
        Cifar100(tmp_path, "train")
    assert not marker.exists()
    # The same bytes through the plain unpickler would have run the command: the test can fail.
    pickle.loads((base / "train").read_bytes())
    assert marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(eval)), "x").load()


def test_corrupt_cifar_entries_name_the_file(tmp_path: Path) -> None:
    base = write_cifar100(tmp_path, {"train": (_images(3), [0, 1, 2]), "test": (_images(1), [0])}, NAMES)
    (base / "test").write_bytes((base / "test").read_bytes()[:200])  # truncated download
    with pytest.raises(ValueError, match=r"cannot read CIFAR file .*test: corrupt pickle"):
        Cifar100(tmp_path, "test")
    write_cifar100(tmp_path, {"train": (_images(3), [0, 100, 2])}, NAMES)
    with pytest.raises(ValueError, match=r"train: fine_labels\[1\] = 100 is outside 0..99"):
        read_cifar100_split(tmp_path, "train")
    pickle.dump({b"data": np.zeros((2, 3072), np.float32), b"fine_labels": [0, 1]}, (base / "train").open("wb"),
                protocol=2)
    with pytest.raises(ValueError, match=r"train: 'data' must be a uint8 array of shape \(N, 3072\), got float32"):
        read_cifar100_split(tmp_path, "train")


def test_corrupt_image_names_the_file_and_missing_layout_says_what_it_expects(tmp_path: Path) -> None:
    root = generate_synthetic_classes(tmp_path / "set", classes=2, images_per_class=2, size=16)
    bad = root / "train" / class_names(2)[1] / "00001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    data = ImageFolder(root / "train")
    data[0]  # intact files still load
    with pytest.raises(ValueError, match=f"cannot decode image {bad}"):
        data[3]
    with pytest.raises(FileNotFoundError, match="ImageFolder layout .* or the CIFAR-100 python layout"):
        detect_layout(tmp_path / "empty")
    (root / "val" / "stray_class").mkdir()
    with pytest.raises(ValueError, match="stray_class"):
        open_classification_data(root, ClassificationTestTransform(16), ClassificationTestTransform(16))


def test_train_transform_is_seeded_and_normalised() -> None:
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    transform = ClassificationTrainTransform(24)
    torch.manual_seed(3)
    a = transform(image)
    torch.manual_seed(3)
    b = transform(image)
    torch.manual_seed(4)
    c = transform(image)
    assert a.shape == (3, 24, 24) and torch.equal(a, b) and not torch.equal(a, c)
    grey = np.full((40, 40, 3), [124, 116, 104], np.uint8)  # ~ the ImageNet mean
    assert ClassificationTestTransform(32)(grey).abs().max() < 0.02
