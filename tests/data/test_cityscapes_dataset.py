"""Cityscapes: label-id mapping through cityscapesscripts and errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as table
from PIL import Image

from mtl_ehrnet.data import Cityscapes, TestTransform, list_cityscapes_pairs, to_train_ids


def _city(root: Path, label: np.ndarray, image_size=None, name="x_000000_000019", mode=None) -> Path:
    image_dir, label_dir = root / "leftImg8bit" / "val" / "c", root / "gtFine" / "val" / "c"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    w, h = image_size or (label.shape[1], label.shape[0])
    Image.new("RGB", (w, h)).save(image_dir / f"{name}_leftImg8bit.png")
    path = label_dir / f"{name}_gtFine_labelIds.png"
    Image.fromarray(label, mode).save(path)
    return path


def test_to_train_ids_matches_cityscapesscripts():
    ids = np.array([label.id for label in table if label.id >= 0])
    expected = [label.trainId if 0 <= label.trainId < 255 else 255 for label in table if label.id >= 0]
    assert to_train_ids(ids).tolist() == expected
    assert to_train_ids(np.array([[7, 24], [26, 0]], dtype=np.int32)).tolist() == [[0, 11], [13, 255]]


@pytest.mark.parametrize("bad", [34, 200, -1])
def test_unknown_label_id(bad):
    with pytest.raises(ValueError, match=rf"label ids \[{bad}\] are not in the Cityscapes label table"):
        to_train_ids(np.array([7, bad, 8]))


def test_loads_generated_data(synth):
    ds = Cityscapes(synth.cityscapes_root, "train", TestTransform(64))
    assert len(ds) > 0
    seg = ds.load(0).seg
    assert seg.dtype == np.uint8 and set(np.unique(seg)) <= set(range(19)) | {255}
    assert ds[0]["seg"].shape == (64, 64)


def test_missing_split_and_missing_label(tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit/val"):
        list_cityscapes_pairs(tmp_path, "val")
    label = _city(tmp_path, np.full((8, 8), 7, np.uint8))
    label.unlink()
    with pytest.raises(FileNotFoundError, match="x_000000_000019_gtFine_labelIds.png"):
        Cityscapes(tmp_path, "val")


def test_label_id_outside_table_names_file(tmp_path):
    label = np.full((8, 8), 7, np.uint8)
    label[0, 0] = 40
    _city(tmp_path, label)
    with pytest.raises(ValueError, match=r"x_000000_000019_gtFine_labelIds.png: label ids \[40\]"):
        Cityscapes(tmp_path, "val")[0]


def test_size_mismatch(tmp_path):
    _city(tmp_path, np.full((8, 8), 7, np.uint8), image_size=(16, 8))
    with pytest.raises(ValueError, match="gtFine_labelIds.png is 8x8 but image .*leftImg8bit.png is 16x8"):
        Cityscapes(tmp_path, "val")[0]


def test_colour_label_png_is_rejected(tmp_path):
    _city(tmp_path, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="labelIds.png has mode RGB"):
        Cityscapes(tmp_path, "val")[0]


def test_16bit_label_png_loads(tmp_path):
    _city(tmp_path, np.full((8, 8), 26, np.uint16))  # Pillow writes uint16 as I;16
    assert (Cityscapes(tmp_path, "val", TestTransform(8)).load(0).seg == 13).all()
