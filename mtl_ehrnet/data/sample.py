"""What a dataset hands to a transform, and the keys of the training sample it becomes.

A dataset loads a :class:`RawSample` (original image and labels, in image pixels); a transform
(:class:`~mtl_ehrnet.data.transforms.TrainTransform` or ``TestTransform``) turns it into the training
sample, a dict of tensors with a fixed set of keys so that ``torch.utils.data.default_collate`` batches
pose and segmentation samples together:

=============== ===================== ==================================================================
key             shape / dtype         meaning
=============== ===================== ==================================================================
``image``       (3, H, W) float32     ImageNet-normalised input
``has_pose``    () bool               the sample carries keypoint labels
``has_seg``     () bool               the sample carries segmentation labels
``heatmaps``    (K, H/2, W/2) float32 Gaussian keypoint targets at stride 2 (zeros without pose labels)
``heatmaps_lr`` (K, H/4, W/4) float32 the same at stride 4
``masks``       (H/2, W/2) float32    1 where the pose loss counts; 0 on crowd regions, on people with
                                      no labelled keypoint, outside the image, and everywhere without
                                      pose labels
``masks_lr``    (H/4, W/4) float32    the same at stride 4
``joints``      (30, K, 2) int64      associative-embedding targets at stride 4: flat index
                                      ``y * W/4 + x`` and a visible flag 0/1, one row per person
``seg``         (H, W) uint8          Cityscapes train ids, 255 = ignore (all 255 without seg labels)
``image_id``    () int64              COCO image id, or the index of a Cityscapes image
``affine``      (2, 3) float32        maps original-image pixel coordinates to input pixel coordinates
``orig_size``   (2,) int64            original image (height, width)
=============== ===================== ==================================================================

Pixel coordinates follow COCO: the centre of pixel column ``i`` has ``x = i``. A point at input
coordinate ``u`` lies at ``(u + 0.5) / s - 0.5`` on a stride-``s`` map, which is what
``F.interpolate(..., align_corners=False)`` assumes when the maps are upsampled back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

IGNORE_INDEX = 255
SAMPLE_KEYS = (
    "image", "has_pose", "has_seg", "heatmaps", "heatmaps_lr", "masks", "masks_lr", "joints", "seg",
    "image_id", "affine", "orig_size",
)


@dataclass
class RawSample:
    """One image with its labels in original image pixels.

    Attributes:
        image: uint8 (H, W, 3) RGB.
        image_id: COCO image id or dataset index.
        keypoints: float32 (N, K, 3) rows of (x, y, visibility) for the people whose keypoints are
            labelled; ``None`` when the image has no pose labels at all (a labelled image with no
            person has shape (0, K, 3)).
        ignore: bool (H, W), True where the pose loss must not count (crowd regions, people with
            no labelled keypoint); ``None`` when nothing is ignored.
        seg: uint8 (H, W) train ids with 255 = ignore; ``None`` when the image has no seg labels.
    """

    image: np.ndarray
    image_id: int
    keypoints: Optional[np.ndarray] = None
    ignore: Optional[np.ndarray] = None
    seg: Optional[np.ndarray] = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
