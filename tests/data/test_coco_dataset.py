"""CocoKeypoints: loading, crowd masks, and a clear error for every kind of bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtl_ehrnet.data import CocoKeypoints, TestTransform
from mtl_ehrnet.data.coco import segmentation_mask


def _tiny_coco(tmp_path: Path, annotations=None, images=None, size=(40, 30)) -> Path:
    """An image dir with one 40x30 image and a json; returns the json path."""
    (tmp_path / "img").mkdir(exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(tmp_path / "img" / "a.jpg")
    kp = [0] * 51
    kp[0:3] = [10, 12, 2]
    kp[15:18] = [20, 15, 1]
    document = {
        "images": images if images is not None else [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": annotations if annotations is not None else [
            {"id": 9, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 2, "keypoints": kp,
             "bbox": [5, 5, 20, 20], "area": 400, "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]]}],
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(document))
    return path


def _load(tmp_path: Path, ann: Path, **kw) -> CocoKeypoints:
    return CocoKeypoints(tmp_path / "img", ann, TestTransform(32), **kw)


def test_loads_generated_data(synth):
    ds = CocoKeypoints(synth.coco_images("train"), synth.coco_annotations("train"), TestTransform(64))
    people = sum(ds.load(i).keypoints.shape[0] for i in range(len(ds)))
    assert people > 0
    sample = ds[0]
    assert sample["image"].shape == (3, 64, 64) and sample["image_id"] == ds.ids[0]


def test_masks_cover_crowd_regions(synth):
    ds = CocoKeypoints(synth.coco_images("train"), synth.coco_annotations("train"), TestTransform(128))
    document = json.loads(synth.coco_annotations("train").read_text())
    crowd = [a for a in document["annotations"] if a["iscrowd"]]
    assert crowd, "the fixture should hold a crowd annotation"
    annotation = crowd[0]
    index = ds.ids.index(annotation["image_id"])
    raw = ds.load(index)
    region = segmentation_mask(annotation, raw.height, raw.width)
    assert raw.ignore[region].all()
    sample = ds[index]
    # Crowd pixels whose whole 3x3 neighbourhood is crowd: the stride-2 cell holding them is ignored.
    padded = np.pad(region, 1)
    core = np.ones_like(region)
    for dy in range(3):
        for dx in range(3):
            core &= padded[dy:dy + region.shape[0], dx:dx + region.shape[1]]
    assert core.any()
    ys, xs = np.nonzero(core)
    affine = sample["affine"].double().numpy()
    u = np.stack([xs, ys], 1) @ affine[:, :2].T + affine[:, 2]
    cells = np.floor((u + 0.5) / 2).astype(int)
    masks = sample["masks"].numpy()
    assert (masks[cells[:, 1], cells[:, 0]] == 0).all()
    assert masks.sum() > 0


def test_polygon_segmentation_and_unlabelled_person_is_masked(tmp_path):
    ann = _tiny_coco(tmp_path, annotations=[
        {"id": 1, "image_id": 1, "iscrowd": 0, "num_keypoints": 0, "keypoints": [0] * 51,
         "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]], "bbox": [0, 0, 10, 10]}])
    raw = _load(tmp_path, ann).load(0)
    assert raw.keypoints.shape == (0, 17, 3)
    assert raw.ignore[2:8, 2:8].all() and not raw.ignore[20:, 20:].any()


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoKeypoints(tmp_path, tmp_path / "nope.json")


def test_invalid_json(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid json"):
        CocoKeypoints(tmp_path, tmp_path / "bad.json")


@pytest.mark.parametrize("key", ["images", "annotations"])
def test_json_missing_keys(tmp_path, key):
    ann = _tiny_coco(tmp_path)
    document = json.loads(ann.read_text())
    del document[key]
    ann.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=f"ann.json: missing key '{key}'"):
        _load(tmp_path, ann)


def test_annotation_missing_keys(tmp_path):
    ann = _tiny_coco(tmp_path, annotations=[{"id": 4, "image_id": 1, "keypoints": [0] * 51}])
    with pytest.raises(ValueError, match=r"annotation 4 lacks \['num_keypoints'\]"):
        _load(tmp_path, ann)


def test_annotation_pointing_at_unknown_image(tmp_path):
    ann = _tiny_coco(tmp_path, annotations=[
        {"id": 5, "image_id": 77, "num_keypoints": 0, "keypoints": [0] * 51, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="annotation 5 points at image_id 77"):
        _load(tmp_path, ann)


def test_wrong_keypoint_count_and_visibility(tmp_path):
    ann = _tiny_coco(tmp_path, annotations=[{"id": 6, "image_id": 1, "num_keypoints": 0, "keypoints": [0] * 50}])
    with pytest.raises(ValueError, match="annotation 6 has 50 keypoint values, expected 51"):
        _load(tmp_path, ann)
    kp = [0] * 51
    kp[2] = 3
    ann = _tiny_coco(tmp_path, annotations=[{"id": 7, "image_id": 1, "num_keypoints": 1, "keypoints": kp}])
    with pytest.raises(ValueError, match="annotation 7 has visibilities"):
        _load(tmp_path, ann)


def test_num_keypoints_inconsistent(tmp_path):
    ann = _tiny_coco(tmp_path)
    document = json.loads(ann.read_text())
    document["annotations"][0]["num_keypoints"] = 5
    ann.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="annotation 9 says num_keypoints=5 but 2 keypoints"):
        _load(tmp_path, ann)
    with pytest.warns(UserWarning, match="repaired 1 annotation.*inconsistent num_keypoints"):
        ds = _load(tmp_path, ann, strict=False)
    assert (ds.load(0).keypoints[0, :, 2] > 0).sum() == 2


def test_keypoints_outside_the_image(tmp_path):
    ann = _tiny_coco(tmp_path)
    document = json.loads(ann.read_text())
    document["annotations"][0]["keypoints"][15:18] = [55, 10, 2]  # x = 55 on a 40-wide image
    ann.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"annotation 9 has keypoints \[5\] outside the 40x30 image a.jpg"):
        _load(tmp_path, ann)
    with pytest.warns(UserWarning, match="repaired 1 annotation.*outside the image"):
        ds = _load(tmp_path, ann, strict=False)
    keypoints = ds.load(0).keypoints[0]
    assert keypoints[5, 2] == 0 and keypoints[0, 2] == 2


def test_missing_image_file(tmp_path):
    ann = _tiny_coco(tmp_path)
    (tmp_path / "img" / "a.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"img/a.jpg \(image id 1 in .*ann.json\)"):
        _load(tmp_path, ann)
    with pytest.raises(FileNotFoundError, match="img/a.jpg"):
        _load(tmp_path, ann, check_files=False)[0]


def test_corrupt_image(tmp_path):
    ann = _tiny_coco(tmp_path)
    (tmp_path / "img" / "a.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ValueError, match="cannot decode image .*a.jpg"):
        _load(tmp_path, ann)[0]


def test_image_size_differs_from_json(tmp_path):
    ann = _tiny_coco(tmp_path, size=(41, 30))
    with pytest.raises(ValueError, match=r"a.jpg is 41x30 but .*ann.json says 40x30"):
        _load(tmp_path, ann)[0]


def test_error_inside_a_dataloader_worker_names_the_file(tmp_path):
    from torch.utils.data import DataLoader

    ann = _tiny_coco(tmp_path)
    shutil.copy(tmp_path / "img" / "a.jpg", tmp_path / "keep.jpg")
    (tmp_path / "img" / "a.jpg").write_bytes(b"garbage")
    batches = iter(DataLoader(_load(tmp_path, ann), num_workers=1))
    try:
        with pytest.raises(ValueError, match="a.jpg"):
            next(batches)
    finally:
        batches._shutdown_workers()  # otherwise the idle worker is reaped only after a 5 s timeout
