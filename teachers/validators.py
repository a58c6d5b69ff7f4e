"""Per-epoch validators that split their images over the ranks of a ``torchrun`` job.

Each computes what :mod:`evaluation.dataset_eval` computes for the whole set (the same predictor settings,
the same batches), but as a :class:`mtl_ehrnet.training.validation.ShardedValidator`: every rank predicts its
share of the batches and rank 0 scores the gathered predictions, so the metrics equal a single process's.
The student trainer (``distill``) validates with them too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from pycocotools.coco import COCO
from torch import nn

from evaluation.coco_eval import coco_keypoint_ap, to_coco_results
from evaluation.seg_metrics import ConfusionMatrix
from mtl_ehrnet.data.cityscapes import list_cityscapes_pairs, read_train_ids
from mtl_ehrnet.data.image_io import read_rgb
from mtl_ehrnet.inference.predictor import Predictor
from mtl_ehrnet.training.validation import shard_batches

PathLike = Union[str, Path]
CocoPart = List[Tuple[int, List[dict]]]  # (first image index of a batch, the batch's COCO results)


def _tasks(model: nn.Module) -> Tuple[str, ...]:
    return tuple(getattr(model, "tasks", ()))


class CocoValidator:
    """COCO keypoint AP (``AP``, ``AP50``... as :func:`evaluation.coco_keypoint_ap`) on every image of
    ``ann_file``, as :func:`evaluation.dataset_eval.evaluate_coco` with its defaults computes it.

    Args:
        ann_file: ``person_keypoints_*.json``.
        image_dir: folder the json's ``file_name`` entries are relative to.
        batch_size: images per forward pass (a batch is never split between ranks).
    """

    def __init__(self, ann_file: PathLike, image_dir: PathLike, batch_size: int = 8) -> None:
        self.ann_file, self.image_dir, self.batch_size = Path(ann_file), Path(image_dir), batch_size
        self._coco: Optional[COCO] = None

    @property
    def coco(self) -> COCO:
        if self._coco is None:
            self._coco = COCO(str(self.ann_file))
        return self._coco

    def image_ids(self) -> List[int]:
        return sorted(self.coco.getImgIds())

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        return self.reduce([self.shard(model, 0, 1)])

    def shard(self, model: nn.Module, rank: int, world: int) -> CocoPart:
        """The COCO results of ``rank``'s batches, each with the index of its first image."""
        if "pose" not in _tasks(model):
            raise ValueError(f"the model has no pose head (tasks {_tasks(model)}); it cannot be validated on COCO "
                             "keypoints")
        ids = self.image_ids()
        predictor = Predictor(model.eval(), batch_size=self.batch_size)
        part: CocoPart = []
        for batch in shard_batches(len(ids), self.batch_size, rank, world):
            chunk = [ids[i] for i in batch]
            images = [read_rgb(self.image_dir / self.coco.imgs[i]["file_name"]) for i in chunk]
            results: List[dict] = []
            for image_id, prediction in zip(chunk, predictor(images)):
                results += to_coco_results(image_id, prediction.poses, prediction.scores)
            part.append((batch.start, results))
        return part

    def reduce(self, parts: Sequence[CocoPart]) -> Dict[str, float]:
        # In image order, as one process lists them: COCOeval breaks score ties by list order.
        batches = sorted((entry for part in parts for entry in part), key=lambda entry: entry[0])
        results = [result for _, batch in batches for result in batch]
        return coco_keypoint_ap(self.coco, results, image_ids=self.image_ids())


class CityscapesValidator:
    """mIoU and pixel accuracy on a Cityscapes split at full label resolution, as
    :func:`evaluation.dataset_eval.evaluate_cityscapes` computes them.

    Args:
        root: Cityscapes root.
        split: ``val``, ``train``...
        num_classes: classes scored; the model's ``config.num_classes`` when None (19 without one).
        batch_size: images per forward pass.
    """

    def __init__(self, root: PathLike, split: str = "val", num_classes: Optional[int] = None,
                 batch_size: int = 8) -> None:
        self.root, self.split, self.num_classes, self.batch_size = Path(root), split, num_classes, batch_size

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        return self.reduce([self.shard(model, 0, 1)])

    def shard(self, model: nn.Module, rank: int, world: int) -> torch.Tensor:
        """The (C, C + 1) int64 confusion matrix (on the CPU) of ``rank``'s batches."""
        if "seg" not in _tasks(model):
            raise ValueError(f"the model has no segmentation head (tasks {_tasks(model)}); it cannot be validated on "
                             "Cityscapes")
        classes = self.num_classes or getattr(getattr(model, "config", None), "num_classes", 19)
        pairs = list_cityscapes_pairs(self.root, self.split)
        predictor = Predictor(model.eval(), batch_size=self.batch_size)
        confusion = ConfusionMatrix(classes, device="cpu")
        for batch in shard_batches(len(pairs), self.batch_size, rank, world):
            chunk = [pairs[i] for i in batch]
            for (_, label), prediction in zip(chunk, predictor([read_rgb(image) for image, _ in chunk])):
                confusion.update(prediction.seg, read_train_ids(label))
        return confusion.matrix.cpu()

    def reduce(self, parts: Sequence[torch.Tensor]) -> Dict[str, float]:
        confusion = ConfusionMatrix(parts[0].shape[0])
        confusion.matrix = torch.stack(list(parts)).sum(dim=0)
        metrics = confusion.compute()
        return {"mIoU": float(metrics["mIoU"]), "pixel_accuracy": float(metrics["pixel_accuracy"])}


class JointValidator:
    """AP, mIoU and their mean ``score`` on a split labelled for both tasks (``synth``'s ``joint/``: a
    Cityscapes root with ``annotations/person_keypoints_<split>.json``), as
    :func:`evaluation.dataset_eval.evaluate_joint` computes AP and mIoU."""

    def __init__(self, root: PathLike, split: str = "val", batch_size: int = 8) -> None:
        root = Path(root)
        annotations = root / "annotations" / f"person_keypoints_{split}.json"
        self.pose = CocoValidator(annotations, root / "leftImg8bit" / split, batch_size)
        self.seg = CityscapesValidator(root, split, batch_size=batch_size)

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        return self.reduce([self.shard(model, 0, 1)])

    def shard(self, model: nn.Module, rank: int, world: int) -> Tuple[CocoPart, torch.Tensor]:
        return self.pose.shard(model, rank, world), self.seg.shard(model, rank, world)

    def reduce(self, parts: Sequence[Tuple[Any, Any]]) -> Dict[str, float]:
        ap = self.pose.reduce([pose for pose, _ in parts])["AP"]
        miou = self.seg.reduce([seg for _, seg in parts])["mIoU"]
        return {"AP": ap, "mIoU": miou, "score": (ap + miou) / 2}
