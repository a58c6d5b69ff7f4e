"""coco_keypoint_ap: perfect results score 1, perturbed ones exactly what pycocotools says."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evaluation import coco_keypoint_ap
from evaluation.coco_eval import KEYPOINT_METRICS, to_coco_results, write_coco_results


@pytest.fixture
def ann_file(tmp_path: Path) -> Path:
    """Three images, medium and large people, some joints unlabelled (v = 0)."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id in (1, 2, 3):
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 640, "height": 480})
        for _ in range(image_id):
            w, h = rng.uniform(40, 200), rng.uniform(80, 300)
            x0, y0 = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            xy = np.stack((x0 + rng.uniform(0, w, 17), y0 + rng.uniform(0, h, 17)), 1)
            vis = rng.choice([0, 1, 2], 17, p=[0.2, 0.2, 0.6])
            kps = np.concatenate((xy * (vis[:, None] > 0), vis[:, None]), 1)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "bbox": [x0, y0, w, h], "area": w * h * 0.6,
                "keypoints": kps.reshape(-1).tolist(), "num_keypoints": int((vis > 0).sum()),
            })
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": [str(i) for i in range(17)],
                   "skeleton": []}]
    path = tmp_path / "person_keypoints_test.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def gt_as_results(ann_file: Path, noise: float = 0.0, seed: int = 1) -> list:
    rng = np.random.default_rng(seed)
    results = []
    for ann in json.loads(ann_file.read_text())["annotations"]:
        kps = np.asarray(ann["keypoints"], float).reshape(17, 3)
        kps[:, :2] += rng.normal(0, noise, (17, 2))
        kps[:, 2] = 1.0
        results += to_coco_results(ann["image_id"], kps[None], [float(rng.uniform(0.5, 1))])
    return results


def test_ground_truth_as_results_scores_one(ann_file: Path) -> None:
    metrics = coco_keypoint_ap(ann_file, gt_as_results(ann_file))
    assert set(metrics) == set(KEYPOINT_METRICS)
    for name in ("AP", "AP50", "AP75", "AR", "AR50", "AR75"):
        assert metrics[name] == pytest.approx(1.0), name


def test_perturbed_results_equal_pycocotools(ann_file: Path, tmp_path: Path) -> None:
    results = gt_as_results(ann_file, noise=6.0)
    results += to_coco_results(2, np.full((1, 17, 3), 50.0), [0.9])  # a false positive
    ours = coco_keypoint_ap(ann_file, results)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="keypoints")
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    assert [ours[name] for name in KEYPOINT_METRICS] == [float(v) for v in evaluator.stats]
    assert 0.0 < ours["AP"] < 1.0
    from_file = coco_keypoint_ap(ann_file, write_coco_results(tmp_path / "out" / "results.json", results))
    assert from_file == ours


def test_empty_results_score_zero(ann_file: Path, tmp_path: Path) -> None:
    assert coco_keypoint_ap(ann_file, []) == {name: 0.0 for name in KEYPOINT_METRICS}
    assert coco_keypoint_ap(ann_file, write_coco_results(tmp_path / "empty.json", []))["AP"] == 0.0


def test_image_subset(ann_file: Path) -> None:
    results = [r for r in gt_as_results(ann_file) if r["image_id"] == 3]
    assert coco_keypoint_ap(ann_file, results)["AR"] < 1.0
    assert coco_keypoint_ap(ann_file, results, image_ids=[3])["AR"] == pytest.approx(1.0)


def test_results_file_format(tmp_path: Path) -> None:
    path = write_coco_results(tmp_path / "r.json", to_coco_results(7, np.arange(51.0).reshape(1, 17, 3), [0.5]))
    (entry,) = json.loads(path.read_text())
    assert entry == {"image_id": 7, "category_id": 1, "keypoints": list(np.arange(51.0)), "score": 0.5}


def test_missing_files_raise(tmp_path: Path, ann_file: Path) -> None:
    with pytest.raises(FileNotFoundError):
        coco_keypoint_ap(tmp_path / "nope.json", [])
    with pytest.raises(FileNotFoundError):
        coco_keypoint_ap(ann_file, tmp_path / "nope.json")
