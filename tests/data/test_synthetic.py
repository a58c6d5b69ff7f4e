"""The synthetic generator writes real COCO / Cityscapes formats, deterministically."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label
from PIL import Image
from pycocotools.coco import COCO

from mtl_ehrnet.data import (
    Cityscapes,
    CocoKeypoints,
    JointDataset,
    TestTransform,
    generate_synthetic,
    list_cityscapes_pairs,
)
from mtl_ehrnet.data.scene import PERSON, SceneOptions, render_scene


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("split", ["train", "val"])
def test_pycocotools_loads_generated_json(synth, split):
    coco = COCO(str(synth.coco_annotations(split)))
    assert coco.getCatIds() == [1]
    assert len(coco.cats[1]["keypoints"]) == 17
    for ann in coco.loadAnns(coco.getAnnIds()):
        visibility = np.asarray(ann["keypoints"]).reshape(17, 3)[:, 2]
        assert ann["num_keypoints"] == int((visibility > 0).sum())
        assert set(visibility.tolist()) <= {0, 1, 2}
        mask = coco.annToMask(ann)
        assert mask.sum() == pytest.approx(ann["area"], abs=0.5)
        image = coco.imgs[ann["image_id"]]
        assert (synth.coco_images(split) / image["file_name"]).is_file()


def test_scene_statistics_are_not_trivial():
    people = crowds = empty = unlabelled = occluded = truncated = 0
    for i in range(40):
        scene = render_scene(np.random.default_rng([11, i]), 96, 72)
        empty += not scene.people
        crowds += len(scene.crowds)
        for person in scene.people:
            labelled = person.keypoints[:, 2] > 0
            people += labelled.any()
            unlabelled += not person.crowd and not labelled.any()
            occluded += (person.keypoints[:, 2] == 1).any()
            truncated += labelled.any() and not labelled.all()
    assert people > 60 and crowds >= 1 and empty >= 1 and unlabelled >= 1
    assert occluded >= 5 and truncated >= 5


def test_scene_options_bound_people_count_and_height():
    options = SceneOptions(people=(1, 2), min_person_height=0.4, max_person_height=0.7, crowds=False,
                           empty_fraction=0.0)
    heights = []
    for i in range(30):
        scene = render_scene(np.random.default_rng([5, i]), 96, 72, options)
        assert 1 <= len(scene.people) <= 2 and not scene.crowds
        for person in scene.people:
            # The skeleton spans nose/eyes to ankles: about 0.9 of the drawn height.
            ys = person.keypoints[person.keypoints[:, 2] > 0, 1]
            if len(ys) == 17:
                heights.append((ys.max() - ys.min()) / 72)
    assert heights and 0.4 * 0.8 < min(heights) and max(heights) < 0.7
    standard = [len(render_scene(np.random.default_rng([5, i]), 96, 72).people) for i in range(30)]
    assert max(standard) > 2  # the default set is busier


@pytest.mark.parametrize("bad", [dict(people=(3, 1)), dict(min_person_height=0.9),
                                 dict(min_person_height=0.5, max_person_height=0.4), dict(empty_fraction=1.5)])
def test_scene_options_reject_bad_values(bad):
    with pytest.raises(ValueError):
        SceneOptions(**bad)


def test_synth_command_passes_scene_options(tmp_path):
    from mtl_ehrnet.cli import main
    assert main(["synth", str(tmp_path / "s"), "--images", "5", "--size", "96x72", "--people", "1", "1",
                 "--min-person-height", "0.4", "--no-crowds"]) == 0
    coco = COCO(str(tmp_path / "s/coco/annotations/person_keypoints_train.json"))
    per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert max(per_image) <= 1 and not any(a["iscrowd"] for a in coco.loadAnns(coco.getAnnIds()))
    with pytest.raises(SystemExit, match="people"):
        main(["synth", str(tmp_path / "t"), "--people", "2", "1"])


def test_every_label_id_is_in_the_cityscapes_table(synth):
    seen = set()
    for root in (synth.cityscapes_root, synth.joint_root):
        for split in (("train", "val") if root == synth.cityscapes_root else ("val",)):
            for _, label in list_cityscapes_pairs(root, split):
                seen |= set(np.unique(np.asarray(Image.open(label))).tolist())
    assert seen <= set(id2label)
    assert PERSON in seen and {7, 8, 11, 23} <= seen
    assert any(id2label[i].trainId == 255 for i in seen)  # ignored ids appear too


def test_datasets_load_generated_data(synth):
    transform = TestTransform(64)
    pose = CocoKeypoints(synth.coco_images("train"), synth.coco_annotations("train"), transform)
    seg = Cityscapes(synth.cityscapes_root, "val", transform)
    joint = JointDataset(synth.joint_root, "val", transform)
    assert len(pose) > len(CocoKeypoints(synth.coco_images("val"), synth.coco_annotations("val"), transform))
    assert pose[0]["has_pose"] and not pose[0]["has_seg"] and (pose[0]["seg"] == 255).all()
    assert seg[0]["has_seg"] and not seg[0]["has_pose"] and seg[0]["masks"].sum() == 0
    both = joint[0]
    assert both["has_pose"] and both["has_seg"] and (both["seg"] != 255).any()


def test_joint_val_person_labels_agree(synth):
    joint = JointDataset(synth.joint_root, "val")
    for i in range(len(joint)):
        raw = joint.load(i)
        visible = raw.keypoints[raw.keypoints[..., 2] == 2]
        xs, ys = np.rint(visible[:, 0]).astype(int), np.rint(visible[:, 1]).astype(int)
        assert (raw.seg[ys, xs] == 11).all()  # a visible joint sits on a 'person' pixel


def test_pose_and_segmentation_images_are_disjoint(synth):
    pose = {hashlib.sha1(np.asarray(Image.open(p)).tobytes()).digest()
            for p in synth.coco_images("train").glob("*.jpg")}
    seg = {hashlib.sha1(np.asarray(Image.open(i)).tobytes()).digest()
           for i, _ in list_cityscapes_pairs(synth.cityscapes_root, "train")}
    assert pose and seg and not pose & seg


def test_same_seed_same_bytes(tmp_path):
    a = generate_synthetic(tmp_path / "a", images=3, seed=5, size=(64, 48))
    b = generate_synthetic(tmp_path / "b", images=3, seed=5, size=(64, 48))
    c = generate_synthetic(tmp_path / "c", images=3, seed=6, size=(64, 48))
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file())
    assert all(_digest(a.root / f) == _digest(b.root / f) for f in files)
    assert any(_digest(a.root / f) != _digest(c.root / f) for f in files)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        generate_synthetic(tmp_path, images=0)
    with pytest.raises(ValueError, match="too small"):
        generate_synthetic(tmp_path, images=1, size=(16, 16))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        generate_synthetic(tmp_path / "file", images=1)


def test_joint_dataset_needs_a_label_for_every_image(synth, tmp_path):
    root = tmp_path / "joint"
    shutil.copytree(synth.joint_root, root)
    json_path = root / "annotations" / "person_keypoints_val.json"
    document = json.loads(json_path.read_text())
    extra = dict(document["images"][0], id=99, file_name="elsewhere/x_leftImg8bit.png")
    document["images"].append(extra)
    (root / "leftImg8bit" / "val" / "elsewhere").mkdir()
    shutil.copy(root / "leftImg8bit" / "val" / document["images"][0]["file_name"],
                root / "leftImg8bit" / "val" / "elsewhere" / "x_leftImg8bit.png")
    json_path.write_text(json.dumps(document))
    with pytest.raises(FileNotFoundError, match="x_gtFine_labelIds.png"):
        JointDataset(root, "val")
