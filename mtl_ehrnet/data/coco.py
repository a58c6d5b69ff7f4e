"""COCO keypoints: any ``person_keypoints_*.json`` plus its image directory.

The annotation file is validated once, when the dataset is built, so a bad file fails in the main
process with its name, the annotation id and the offending value. What each bad input does:

* missing or undecodable json, missing keys, annotations pointing at unknown images, keypoint lists
  of the wrong length, visibilities outside {0, 1, 2}: ``ValueError``;
* image files missing on disk: ``FileNotFoundError`` at construction (``check_files=True``) or when
  the image is loaded; corrupt images or a size different from the json's: ``ValueError`` naming it;
* ``num_keypoints`` disagreeing with the visibilities, labelled keypoints outside the image:
  ``ValueError`` when ``strict`` (the default); otherwise one warning with the count, and the label
  is repaired (the visibilities win; the outside keypoints become unlabelled).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import pycocotools.mask as mask_utils
import torch

from mtl_ehrnet.data.fingerprint import files_digest, text_digest
from mtl_ehrnet.data.image_io import read_rgb
from mtl_ehrnet.data.raw_dataset import RawDataset
from mtl_ehrnet.data.sample import RawSample
from mtl_ehrnet.data.skeleton import NUM_KEYPOINTS

PathLike = Union[str, Path]


def load_coco_json(ann_file: PathLike) -> Dict[str, Any]:
    """Reads a COCO json and checks its top-level keys.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not valid json, or without ``images`` / ``annotations`` lists.
    """
    path = Path(ann_file)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid json: {err}") from err
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a COCO json object, got {type(document).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(document.get(key), list):
            raise ValueError(f"{path}: missing key '{key}' (a list) of the COCO keypoints format")
    return document


def segmentation_mask(annotation: Dict[str, Any], height: int, width: int) -> np.ndarray:
    """Decodes an annotation's polygon / RLE segmentation (or its bbox when it has none).

    Returns:
        bool (height, width).
    """
    segmentation = annotation.get("segmentation")
    if segmentation:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        mask = mask_utils.decode(rle)
    else:
        x, y, w, h = annotation["bbox"]
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[max(int(y), 0):int(np.ceil(y + h)), max(int(x), 0):int(np.ceil(x + w))] = 1
    if mask.shape != (height, width):
        raise ValueError(f"segmentation of size {mask.shape} on an image of size {(height, width)}")
    return mask.astype(bool)


class CocoKeypoints(RawDataset):
    """Multi-person keypoints in the COCO format; samples carry pose labels only.

    Args:
        image_dir: directory that the json's ``file_name`` entries are relative to.
        ann_file: ``person_keypoints_*.json``.
        transform: RawSample -> sample dict (default: ``TestTransform(512)``).
        num_joints: K, the keypoints per person.
        strict: raise on inconsistent ``num_keypoints`` and keypoints outside the image instead of
            repairing them with a counted warning.
        check_files: check at construction that every image file exists.
        skip_empty: drop images without any annotation (HigherHRNet trains this way).
    """

    def __init__(
        self,
        image_dir: PathLike,
        ann_file: PathLike,
        transform: Optional[Callable[[RawSample], Dict[str, torch.Tensor]]] = None,
        *,
        num_joints: int = NUM_KEYPOINTS,
        strict: bool = True,
        check_files: bool = True,
        skip_empty: bool = False,
    ) -> None:
        super().__init__(transform)
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        self.num_joints = num_joints
        document = load_coco_json(self.ann_file)
        self.images: Dict[int, Dict[str, Any]] = {}
        for i, image in enumerate(document["images"]):
            missing = [k for k in ("id", "file_name", "width", "height") if k not in image]
            if missing:
                raise ValueError(f"{self.ann_file}: images[{i}] lacks {missing}")
            if image["id"] in self.images:
                raise ValueError(f"{self.ann_file}: duplicate image id {image['id']}")
            self.images[image["id"]] = image
        self._keypoints: Dict[int, List[np.ndarray]] = {i: [] for i in self.images}
        self._ignored: Dict[int, List[Dict[str, Any]]] = {i: [] for i in self.images}
        self._repairs = {"inconsistent num_keypoints": 0, "keypoints outside the image": 0}
        for i, annotation in enumerate(document["annotations"]):
            self._add_annotation(i, annotation, strict)
        for what, count in self._repairs.items():
            if count:
                warnings.warn(f"{self.ann_file}: repaired {count} annotation(s) with {what} (strict=False)",
                              stacklevel=2)
        ids = sorted(self.images)
        if skip_empty:
            ids = [i for i in ids if self._keypoints[i] or self._ignored[i]]
        self.ids = ids
        if check_files:
            for image_id in self.ids:
                path = self.image_path(image_id)
                if not path.is_file():
                    raise FileNotFoundError(f"image file not found: {path} (image id {image_id} in {self.ann_file})")

    def _add_annotation(self, index: int, annotation: Dict[str, Any], strict: bool) -> None:
        where = f"{self.ann_file}: annotation {annotation.get('id', f'#{index}')}"
        missing = [k for k in ("image_id", "keypoints", "num_keypoints") if k not in annotation]
        if missing:
            raise ValueError(f"{where} lacks {missing}")
        image = self.images.get(annotation["image_id"])
        if image is None:
            raise ValueError(f"{where} points at image_id {annotation['image_id']}, which is not in 'images'")
        keypoints = np.asarray(annotation["keypoints"], dtype=np.float32)
        if keypoints.shape != (3 * self.num_joints,):
            raise ValueError(f"{where} has {keypoints.size} keypoint values, expected {3 * self.num_joints}")
        keypoints = keypoints.reshape(self.num_joints, 3)
        if not np.isin(keypoints[:, 2], (0, 1, 2)).all():
            raise ValueError(f"{where} has visibilities {keypoints[:, 2].tolist()}; COCO allows 0, 1, 2")
        labelled = keypoints[:, 2] > 0
        if int(annotation["num_keypoints"]) != int(labelled.sum()):
            if strict:
                raise ValueError(f"{where} says num_keypoints={annotation['num_keypoints']} but "
                                 f"{int(labelled.sum())} keypoints have visibility > 0")
            self._repairs["inconsistent num_keypoints"] += 1
        x, y = keypoints[:, 0], keypoints[:, 1]
        outside = labelled & ((x < 0) | (x > image["width"]) | (y < 0) | (y > image["height"]))
        if outside.any():
            if strict:
                raise ValueError(f"{where} has keypoints {np.flatnonzero(outside).tolist()} outside the "
                                 f"{image['width']}x{image['height']} image {image['file_name']}")
            keypoints[outside] = 0
            labelled &= ~outside
            self._repairs["keypoints outside the image"] += 1
        image_id = annotation["image_id"]
        if annotation.get("iscrowd", 0) or not labelled.any():
            # HigherHRNet: crowd regions and people without labelled joints are left out of the loss.
            if not annotation.get("segmentation") and "bbox" not in annotation:
                raise ValueError(f"{where} is crowd/unlabelled but has neither 'segmentation' nor 'bbox'")
            self._ignored[image_id].append(annotation)
        else:
            self._keypoints[image_id].append(keypoints)

    def image_path(self, image_id: int) -> Path:
        """The file of a COCO image id."""
        return self.image_dir / self.images[image_id]["file_name"]

    def __len__(self) -> int:
        return len(self.ids)

    def _describe(self) -> Dict[str, str]:
        return {"images": text_digest(self.images[i]["file_name"] for i in self.ids),
                "annotations": files_digest([self.ann_file])}

    def load(self, index: int) -> RawSample:
        """Image, keypoints (N, K, 3) and the crowd/unlabelled ignore mask of sample ``index``."""
        image_id = self.ids[index]
        info = self.images[image_id]
        path = self.image_path(image_id)
        image = read_rgb(path)
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(f"image {path} is {image.shape[1]}x{image.shape[0]} but {self.ann_file} says "
                             f"{info['width']}x{info['height']}")
        people = self._keypoints[image_id]
        keypoints = np.stack(people) if people else np.zeros((0, self.num_joints, 3), dtype=np.float32)
        ignore = None
        if self._ignored[image_id]:
            ignore = np.zeros(image.shape[:2], dtype=bool)
            for annotation in self._ignored[image_id]:
                try:
                    ignore |= segmentation_mask(annotation, *image.shape[:2])
                except (ValueError, TypeError, KeyError) as err:
                    raise ValueError(f"{self.ann_file}: annotation {annotation.get('id')} of {path} has a "
                                     f"bad segmentation: {err}") from err
        return RawSample(image=image, image_id=int(image_id), keypoints=keypoints, ignore=ignore)
