"""COCO keypoint AP through pycocotools' COCOeval, and results files in the official format."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# The order of COCOeval.stats for iouType="keypoints".
KEYPOINT_METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")

PathLike = Union[str, Path]


def to_coco_results(image_id: int, keypoints: np.ndarray, scores: Sequence[float], category_id: int = 1) -> List[dict]:
    """COCO keypoint result dicts for one image.

    Args:
        image_id: the image's id in the annotation file.
        keypoints: (N, K, 3) (x, y, value) in image pixels.
        scores: (N,) pose scores.
        category_id: 1 for COCO person.

    Returns:
        N dicts ``{"image_id", "category_id", "keypoints": [x1, y1, v1, ...], "score"}``.
    """
    if len(scores) == 0:
        return []
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(len(scores), -1, 3)
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category_id),
            "keypoints": [round(float(v), 3) for v in pose.reshape(-1)],
            "score": float(score),
        }
        for pose, score in zip(keypoints, scores)
    ]


def write_coco_results(path: PathLike, results: Iterable[dict]) -> Path:
    """Writes result dicts as the JSON list that COCO's evaluation server and ``COCO.loadRes`` read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(results)))
    return path


def coco_keypoint_ap(
    ann_file: Union[PathLike, COCO],
    results: Union[PathLike, Sequence[dict]],
    *,
    image_ids: Optional[Sequence[int]] = None,
    verbose: bool = False,
) -> Dict[str, float]:
    """COCO keypoint AP and AR of ``results`` against the annotations.

    Args:
        ann_file: a ``person_keypoints_*.json`` path, or an already loaded ``COCO``.
        results: COCO keypoint result dicts, or the path of a JSON file holding them.
        image_ids: evaluate on these images only; default every image in ``ann_file``.
        verbose: print pycocotools' own summary.

    Returns:
        ``{"AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"}`` as COCOeval
        computes them (-1 where an area range has no ground truth). No results score 0 everywhere.

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    if not isinstance(results, (list, tuple)):
        results_path = Path(results)
        if not results_path.is_file():
            raise FileNotFoundError(f"no results file {results_path}")
        results = json.loads(results_path.read_text())
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        gt = ann_file if isinstance(ann_file, COCO) else _load_coco(ann_file)
        if len(results) == 0:
            # COCO.loadRes cannot load an empty list; no detections means zero precision and recall.
            return {name: 0.0 for name in KEYPOINT_METRICS}
        dt = gt.loadRes(list(results))
        evaluator = COCOeval(gt, dt, iouType="keypoints")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(KEYPOINT_METRICS, evaluator.stats)}


def _load_coco(ann_file: PathLike) -> COCO:
    path = Path(ann_file)
    if not path.is_file():
        raise FileNotFoundError(f"no COCO annotation file {path}")
    return COCO(str(path))
