"""The embedded synthetic dataset: street scenes written in the real COCO and Cityscapes formats.

Layout under ``root`` (every path is the standard one, so the real-data loaders read it unchanged)::

    coco/images/{train,val}/<id:012d>.jpg
    coco/annotations/person_keypoints_{train,val}.json
    cityscapes/leftImg8bit/{train,val}/<city>/<city>_<seq>_000019_leftImg8bit.png
    cityscapes/gtFine/{train,val}/<city>/<city>_<seq>_000019_gtFine_labelIds.png
    joint/leftImg8bit/val/<city>/..._leftImg8bit.png       the joint/val split: both label kinds
    joint/gtFine/val/<city>/..._gtFine_labelIds.png        for the same images; its COCO json's
    joint/annotations/person_keypoints_val.json            file_name is relative to joint/leftImg8bit/val

As with the real datasets, pose images and segmentation images are disjoint scenes. Every image is
drawn from its own random stream ``(seed, set, index)``, so the same seed gives byte-identical files
and image ``i`` does not depend on how many images are asked for.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image
from tqdm import tqdm

from mtl_ehrnet.data.polygons import mask_polygons
from mtl_ehrnet.data.scene import Scene, SceneOptions, render_scene
from mtl_ehrnet.data.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON

DEFAULT_SIZE = (320, 240)  # (W, H): a 4:3 frame, small enough for ~100 images per second
VAL_FRACTION = 0.2
_POSE, _SEG, _JOINT = 0, 1, 2
_SEG_CITIES = {"train": ("synthtown", "synthville"), "val": ("synthburg",)}
_JOINT_CITY = "synthport"
JOINT_IMAGE_ID_OFFSET = 1_000_000  # joint/val ids never collide with the pose set's


@dataclass(frozen=True)
class SyntheticLayout:
    """Where :func:`generate_synthetic` puts things under ``root``."""

    root: Path

    def coco_images(self, split: str) -> Path:
        return self.root / "coco" / "images" / split

    def coco_annotations(self, split: str) -> Path:
        return self.root / "coco" / "annotations" / f"person_keypoints_{split}.json"

    @property
    def cityscapes_root(self) -> Path:
        return self.root / "cityscapes"

    @property
    def joint_root(self) -> Path:
        """A Cityscapes root whose ``val`` split also has COCO keypoints."""
        return self.root / "joint"

    @property
    def joint_images(self) -> Path:
        return self.joint_root / "leftImg8bit" / "val"

    @property
    def joint_annotations(self) -> Path:
        return self.joint_root / "annotations" / "person_keypoints_val.json"


def _uncompressed_rle(mask: np.ndarray) -> Dict[str, list]:
    """COCO's crowd format: run lengths over the column-major mask, starting with a run of zeros."""
    flat = mask.ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def coco_annotations(scene: Scene, image_id: int, first_id: int) -> List[dict]:
    """COCO keypoint annotations for a scene's people and crowds, in COCO's own conventions.

    A person's ``segmentation`` is a list of polygons traced around their mask (holes filled, as COCO's
    annotators draw; :func:`mtl_ehrnet.data.polygons.mask_polygons`), and each crowd becomes one
    ``iscrowd = 1`` annotation with an uncompressed RLE (``counts`` a list of run lengths), so loaders that
    pass either to ``pycocotools.mask.frPyObjects`` read them. ``area`` and ``bbox`` are those of the
    decoded region. People too small to label get ``num_keypoints = 0`` (their region is masked out by
    the loaders).
    """
    annotations = []
    entries = [(p.mask, p.keypoints, 0) for p in scene.people if not p.crowd]
    entries += [(m, np.zeros((len(COCO_KEYPOINT_NAMES), 3)), 1) for m in scene.crowds]
    for mask, keypoints, crowd in entries:
        height, width = mask.shape
        if crowd:
            segmentation: object = _uncompressed_rle(mask)
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            segmentation = mask_polygons(mask)
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        values = np.round(keypoints, 2)
        annotations.append({
            "id": first_id + len(annotations),
            "image_id": image_id,
            "category_id": 1,
            "iscrowd": crowd,
            "segmentation": segmentation,
            "area": float(mask_utils.area(rle)),
            "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
            "num_keypoints": int((keypoints[:, 2] > 0).sum()),
            "keypoints": [int(v) if float(v).is_integer() else float(v) for v in values.ravel()],
        })
    return annotations


def _coco_document(images: List[dict], annotations: List[dict]) -> dict:
    return {
        "info": {"description": "mtl_ehrnet synthetic street scenes", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{
            "id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(COCO_KEYPOINT_NAMES),
            "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON],
        }],
    }


def _write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")


def _scene(seed: int, stream: int, index: int, size: Tuple[int, int], options: SceneOptions) -> Scene:
    return render_scene(np.random.default_rng([seed, stream, index]), *size, options)


def _split_counts(images: int) -> Dict[str, int]:
    val = int(round(images * VAL_FRACTION)) if images > 1 else 0
    return {"train": images - val, "val": max(val, 0)}


def _write_cityscapes_pair(root: Path, split: str, city: str, index: int, scene: Scene) -> str:
    name = f"{city}_{index:06d}_000019"
    image_dir, label_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    # Fast zlib level: the noisy images barely compress anyway, and generation time matters more.
    Image.fromarray(scene.image).save(image_dir / f"{name}_leftImg8bit.png", compress_level=1)
    Image.fromarray(scene.label_ids, "L").save(label_dir / f"{name}_gtFine_labelIds.png")
    return f"{city}/{name}_leftImg8bit.png"


def generate_synthetic(
    root: Union[str, Path],
    images: int = 200,
    seed: int = 0,
    size: Tuple[int, int] = DEFAULT_SIZE,
    progress: bool = False,
    scene_options: SceneOptions = SceneOptions(),
) -> SyntheticLayout:
    """Writes the synthetic pose set, segmentation set and joint/val split under ``root``.

    Args:
        root: output directory (created; existing files with the same names are overwritten).
        images: images per task set; 20 % go to ``val`` (at least one when ``images > 1``), and
            joint/val gets as many images as each ``val`` split (at least one).
        seed: dataset seed.
        size: image (width, height), at least 32 x 32.
        progress: show a tqdm bar.
        scene_options: people per image, their size range, crowds (default: the standard set).

    Returns:
        The :class:`SyntheticLayout` of the written files.

    Raises:
        ValueError: ``images < 1``, a size below 32 px, or ``root`` is an existing file.
    """
    root = Path(root)
    width, height = size
    if images < 1:
        raise ValueError(f"--images must be at least 1, got {images}")
    if width < 32 or height < 32:
        raise ValueError(f"image size {width}x{height} is too small; use at least 32x32")
    if root.exists() and not root.is_dir():
        raise ValueError(f"output path {root} exists and is not a directory")
    layout = SyntheticLayout(root)
    counts = _split_counts(images)
    joint_count = max(1, counts["val"])
    bar = tqdm(total=2 * images + joint_count, desc="synth", unit="img", disable=not progress)

    # Pose set: COCO layout.
    image_id, ann_id = 1, 1
    for split in ("train", "val"):
        records, annotations = [], []
        image_dir = layout.coco_images(split)
        image_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(counts[split]):
            scene = _scene(seed, _POSE, image_id, size, scene_options)
            file_name = f"{image_id:012d}.jpg"
            Image.fromarray(scene.image).save(image_dir / file_name, quality=92)
            records.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            annotations += coco_annotations(scene, image_id, ann_id + len(annotations))
            image_id += 1
            bar.update()
        ann_id += len(annotations)
        _write_json(layout.coco_annotations(split), _coco_document(records, annotations))

    # Segmentation set: Cityscapes layout, different scenes.
    index = 0
    for split in ("train", "val"):
        cities = _SEG_CITIES[split]
        for i in range(counts[split]):
            _write_cityscapes_pair(layout.cityscapes_root, split, cities[i % len(cities)], index,
                                   _scene(seed, _SEG, index, size, scene_options))
            index += 1
            bar.update()

    # joint/val: the same scenes carry both label kinds.
    records, annotations = [], []
    for i in range(joint_count):
        scene = _scene(seed, _JOINT, i, size, scene_options)
        file_name = _write_cityscapes_pair(layout.joint_root, "val", _JOINT_CITY, i, scene)
        joint_id = JOINT_IMAGE_ID_OFFSET + i
        records.append({"id": joint_id, "file_name": file_name, "width": width, "height": height})
        annotations += coco_annotations(scene, joint_id, 1 + len(annotations))
        bar.update()
    _write_json(layout.joint_annotations, _coco_document(records, annotations))
    bar.close()
    return layout
