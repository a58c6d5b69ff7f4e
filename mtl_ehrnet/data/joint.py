"""Images labelled for both tasks: a Cityscapes split plus a COCO keypoints json over its images.

This is the layout of the synthetic ``joint/val`` split (see :mod:`mtl_ehrnet.data.synthetic`), used to
evaluate a joint model on pose and segmentation of the same frames.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Union

import torch

from mtl_ehrnet.data.cityscapes import list_cityscapes_pairs, read_train_ids
from mtl_ehrnet.data.coco import CocoKeypoints
from mtl_ehrnet.data.fingerprint import files_digest
from mtl_ehrnet.data.raw_dataset import RawDataset
from mtl_ehrnet.data.sample import RawSample

PathLike = Union[str, Path]


class JointDataset(RawDataset):
    """Samples with both pose and segmentation labels.

    Args:
        root: a Cityscapes root (``leftImg8bit/``, ``gtFine/``) that also holds
            ``annotations/person_keypoints_<split>.json``, whose ``file_name`` entries are relative to
            ``leftImg8bit/<split>``.
        split: the split shared by both label kinds.
        transform: RawSample -> sample dict (default: ``TestTransform(512)``).
        ann_file: the COCO json, when it is somewhere else.
        strict: passed to :class:`CocoKeypoints`.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "val",
        transform: Optional[Callable[[RawSample], Dict[str, torch.Tensor]]] = None,
        *,
        ann_file: Optional[PathLike] = None,
        strict: bool = True,
    ) -> None:
        super().__init__(transform)
        root = Path(root)
        ann_file = Path(ann_file) if ann_file else root / "annotations" / f"person_keypoints_{split}.json"
        self.coco = CocoKeypoints(root / "leftImg8bit" / split, ann_file, self.transform, strict=strict)
        labels = {image.resolve(): label for image, label in list_cityscapes_pairs(root, split)}
        self.labels = []
        for image_id in self.coco.ids:
            path = self.coco.image_path(image_id)
            if path.resolve() not in labels:
                raise FileNotFoundError(f"no gtFine label for {path} (image id {image_id} in {ann_file})")
            self.labels.append(labels[path.resolve()])

    def __len__(self) -> int:
        return len(self.coco)

    def _describe(self) -> Dict[str, str]:
        return {**self.coco._describe(), "labels": files_digest(self.labels)}

    def load(self, index: int) -> RawSample:
        """Image, keypoints, ignore mask and train ids of sample ``index``."""
        raw = self.coco.load(index)
        seg = read_train_ids(self.labels[index])
        if seg.shape != raw.image.shape[:2]:
            raise ValueError(f"label {self.labels[index]} is {seg.shape[1]}x{seg.shape[0]} but image "
                             f"{self.coco.image_path(raw.image_id)} is {raw.width}x{raw.height}")
        raw.seg = seg
        return raw
