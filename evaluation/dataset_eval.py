"""Evaluate a model on a whole dataset: COCO keypoint AP on a COCO json + images, mIoU on a Cityscapes
split. The ``evaluate`` command and per-epoch validation during training both call these."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

from pycocotools.coco import COCO
from torch import nn
from tqdm import tqdm

from evaluation.coco_eval import coco_keypoint_ap, to_coco_results, write_coco_results
from evaluation.seg_metrics import ConfusionMatrix
from mtl_ehrnet.data.cityscapes import list_cityscapes_pairs, read_train_ids
from mtl_ehrnet.data.image_io import read_rgb
from mtl_ehrnet.inference.predictor import Predictor

PathLike = Union[str, Path]


def evaluate_coco(
    model: nn.Module,
    ann_file: PathLike,
    image_dir: PathLike,
    *,
    flip: bool = False,
    batch_size: int = 8,
    results_file: Optional[PathLike] = None,
    progress: bool = True,
    limit: Optional[int] = None,
    **predictor_options: Any,
) -> Dict[str, float]:
    """COCO keypoint AP of ``model``'s grouped poses on every image of ``ann_file``.

    Args:
        model: a model with a pose head (eval mode is set here).
        ann_file: ``person_keypoints_*.json``.
        image_dir: folder the json's ``file_name`` entries are relative to.
        flip: flip test.
        batch_size: images per forward pass.
        results_file: also write the results in the official COCO format there.
        progress: show a tqdm bar.
        limit: evaluate the first ``limit`` images (by id) only.
        **predictor_options: more :class:`Predictor` options (``input_size``, ``scales``, ``device``, ``mode``).

    Returns:
        AP, AP50, AP75, APM, APL, AR, ... as :func:`evaluation.coco_keypoint_ap` computes them.
    """
    if "pose" not in getattr(model, "tasks", ("pose",)):
        raise ValueError(f"the model has no pose head (tasks {model.tasks}); it cannot be evaluated on COCO keypoints")
    coco = COCO(str(ann_file))
    predictor = Predictor(model.eval(), flip=flip, batch_size=batch_size, **predictor_options)
    image_ids = sorted(coco.getImgIds())[:limit]
    results = []
    for start in tqdm(range(0, len(image_ids), batch_size), desc="COCO keypoints", unit="batch", disable=not progress):
        ids = image_ids[start:start + batch_size]
        images = [read_rgb(Path(image_dir) / coco.imgs[i]["file_name"]) for i in ids]
        for image_id, prediction in zip(ids, predictor(images)):
            results += to_coco_results(image_id, prediction.poses, prediction.scores)
    if results_file is not None:
        write_coco_results(results_file, results)
    return coco_keypoint_ap(coco, results, image_ids=image_ids)


def evaluate_cityscapes(
    model: nn.Module,
    root: PathLike,
    split: str = "val",
    *,
    num_classes: int = 19,
    flip: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    limit: Optional[int] = None,
    **predictor_options: Any,
) -> Dict[str, Union[float, list]]:
    """mIoU, per-class IoU and pixel accuracy of ``model`` on a Cityscapes split, at full label resolution
    (the first ``limit`` pairs only when given; ``flip`` and ``predictor_options`` go to :class:`Predictor`)."""
    if "seg" not in getattr(model, "tasks", ("seg",)):
        raise ValueError(f"the model has no segmentation head (tasks {model.tasks}); "
                         "it cannot be evaluated on Cityscapes")
    pairs = list_cityscapes_pairs(root, split)[:limit]
    predictor = Predictor(model.eval(), flip=flip, batch_size=batch_size, **predictor_options)
    confusion = ConfusionMatrix(num_classes)
    for start in tqdm(range(0, len(pairs), batch_size), desc=f"Cityscapes {split}", unit="batch", disable=not progress):
        chunk = pairs[start:start + batch_size]
        predictions = predictor([read_rgb(image) for image, _ in chunk])
        for (_, label), prediction in zip(chunk, predictions):
            confusion.update(prediction.seg, read_train_ids(label))
    return confusion.compute()


def evaluate_joint(model: nn.Module, root: PathLike, split: str = "val", **options: Any) -> Dict[str, Optional[float]]:
    """AP and mIoU on a split labelled for both tasks: a Cityscapes root that also holds
    ``annotations/person_keypoints_<split>.json`` over ``leftImg8bit/<split>`` (``synth``'s ``joint/``).

    A metric the model has no head for is None.
    """
    root = Path(root)
    tasks = tuple(getattr(model, "tasks", ()))
    options.setdefault("progress", False)
    ap = (evaluate_coco(model, root / "annotations" / f"person_keypoints_{split}.json", root / "leftImg8bit" / split,
                        **options)["AP"] if "pose" in tasks else None)
    miou = (evaluate_cityscapes(model, root, split, num_classes=model.config.num_classes, **options)["mIoU"]
            if "seg" in tasks else None)
    return {"AP": ap, "mIoU": miou}
