"""HigherHRNet's test pipeline (its ``tools/valid.py`` with the published COCO configs) for any model of our
output contract, one image at a time: ``Predictor(model, mode="reference")`` runs it.

Per test scale (largest first): warp the image into its 64-aligned input (:mod:`aligned_resize`), run the
model (and, for flip test, a second pass on the mirrored input), average the stride-2 heatmaps with the
upsampled stride-4 ones, take the tags upsampled to stride 2, mirror the flipped pass's maps back with
joints swapped, upsample everything bilinearly to the scale-1 input size (``PROJECT2IMAGE``), average the
two passes' heatmaps and stack their tags. Heatmaps are averaged over scales; tags come from scale 1 only.
Grouping runs on those input-size maps (:mod:`reference_grouping`) and poses map back through the last
(smallest) scale's box. Segmentation, which the pose reference lacks, follows HRNet-seg's test: logits
upsampled bilinearly to the input, flip passes averaged, then resampled into the image frame.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from mtl_ehrnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mtl_ehrnet.inference.aligned_resize import AlignedFrame, aligned_frame, warp_image
from mtl_ehrnet.inference.reference_grouping import ReferenceGrouping, group_reference

Network = Callable[[torch.Tensor], Dict[str, torch.Tensor]]


def check_reference_scales(scales: Sequence[float]) -> None:
    """Multi-scale reference testing takes tags from scale 1 only, so it must be among the scales."""
    if len(scales) > 1 and 1.0 not in scales:
        raise ValueError("reference multi-scale testing takes the tags from scale 1, so 1 must be among the "
                         f"scales; got {list(scales)}")


class ReferencePipeline:
    """HigherHRNet's test-time inference, image by image.

    Args:
        network: runs a (1, 3, H, W) float32 normalised batch and returns the output contract as float32:
            ``"heatmaps"`` (1, K, H/2, W/2), ``"heatmaps_lr"`` and ``"tags"`` (1, K, H/4, W/4), optional
            ``"seg"`` (1, C, H/4, W/4); any of the pose maps may be absent together (seg-only model).
        input_size: the model's training input size (the reference's ``DATASET.INPUT_SIZE``).
        scales: test scales (``TEST.SCALE_FACTOR``); with more than one, 1 must be among them.
        flip: flip test (``TEST.FLIP_TEST``).
        flip_index: (K,) long tensor, joint permutation under a horizontal mirror.
        grouping: parser settings.
        device: where images are warped and maps combined.
    """

    def __init__(
        self,
        network: Network,
        *,
        input_size: int,
        scales: Sequence[float] = (1.0,),
        flip: bool = True,
        flip_index: torch.Tensor,
        grouping: ReferenceGrouping = ReferenceGrouping(),
        device: torch.device = torch.device("cpu"),
    ) -> None:
        check_reference_scales(scales)
        self.network = network
        self.input_size = int(input_size)
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.flip_index = flip_index.to(device)
        self.grouping = grouping
        self.device = device
        # torchvision's ToTensor + Normalize, which the reference applies to the warped uint8 image.
        self._mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32, device=device).view(3, 1, 1)
        self._std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32, device=device).view(3, 1, 1)

    def __call__(
        self, image: torch.Tensor
    ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
        """Poses and class map of one image.

        Args:
            image: (3, H, W) uint8 RGB tensor.

        Returns:
            poses (N, K, 3) float32 (x, y, value) in image pixels, best score first (stable, so equal scores
            keep the reference's order); scores (N,) float32; class map (H, W) int64. None for a task the
            model has no head for.
        """
        image = image.to(self.device)
        height, width = image.shape[-2:]
        min_scale = min(self.scales)
        base = aligned_frame(height, width, self.input_size, 1.0, min_scale)
        heat_sum: Optional[torch.Tensor] = None
        tags: List[torch.Tensor] = []
        seg_per_scale: List[torch.Tensor] = []
        frame = base
        for scale in sorted(self.scales, reverse=True):
            frame = aligned_frame(height, width, self.input_size, scale, min_scale)
            outputs = self._run(image, frame)
            if "heatmaps" in outputs[0]:
                heat, scale_tags = self._pose_maps(outputs, (base.height, base.width))
                heat_sum = heat if heat_sum is None else heat_sum + heat
                if scale == 1.0 or len(self.scales) == 1:
                    tags += scale_tags
            if "seg" in outputs[0]:
                seg_per_scale.append(self._seg_logits(outputs, frame, (height, width)))
        poses = scores = class_map = None
        if heat_sum is not None:
            heatmaps = heat_sum / float(len(self.scales))
            people, scores = group_reference(heatmaps[0], torch.stack(tags, dim=-1)[0], self.grouping)
            poses = people.copy()
            # The reference maps back through the box of the scale it ran last, onto a map of scale 1's size.
            poses[..., :2] = frame.map_to_image(people[..., :2], (base.width, base.height))
            best_first = np.argsort(-scores, kind="stable")
            poses, scores = poses[best_first], scores[best_first]
        if seg_per_scale:
            # HRNet-seg sums exp(logits) over scales; log-sum-exp has the same argmax without overflow.
            logits = seg_per_scale[0] if len(seg_per_scale) == 1 else torch.stack(seg_per_scale).logsumexp(dim=0)
            class_map = logits.argmax(dim=0).cpu().numpy().astype(np.int64)
        return poses, scores, class_map

    def _run(self, image: torch.Tensor, frame: AlignedFrame) -> List[Dict[str, torch.Tensor]]:
        """The model's outputs for the warped image and, with flip test, for its mirror (two passes, as the
        reference runs them)."""
        warped = warp_image(image, frame.image_to_input(), (frame.width, frame.height))
        batch = ((warped.float().div(255) - self._mean) / self._std)[None]
        outputs = [self.network(batch)]
        if self.flip:
            outputs.append(self.network(batch.flip(-1)))
        return outputs

    def _pose_maps(
        self, outputs: List[Dict[str, torch.Tensor]], size: Tuple[int, int]
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Flip-averaged heatmaps (1, K, *size) and the passes' tags [(1, K, *size)] at one scale."""
        heats, tags = [], []
        for index, out in enumerate(outputs):
            stride2 = out["heatmaps"].shape[-2:]
            low = _upsample(out["heatmaps_lr"], stride2)
            high = out["heatmaps"]
            tag = _upsample(out["tags"], stride2)
            if index == 1:  # the mirrored pass, turned back with left and right joints swapped
                low, high, tag = (m.flip(-1)[:, self.flip_index] for m in (low, high, tag))
            heats.append(_upsample((low + high) / 2, size))
            tags.append(_upsample(tag, size))
        heat = heats[0] if len(heats) == 1 else (heats[0] + heats[1]) / 2.0
        return heat, tags

    def _seg_logits(
        self, outputs: List[Dict[str, torch.Tensor]], frame: AlignedFrame, image_hw: Tuple[int, int]
    ) -> torch.Tensor:
        """Flip-averaged segmentation logits (C, H, W) resampled into the image frame."""
        logits = [_upsample(out["seg"], (frame.height, frame.width)) for out in outputs]
        if len(logits) == 2:
            logits = [(logits[0] + logits[1].flip(-1)) * 0.5]
        return _to_image_frame(logits[0][0], frame, image_hw)


def _upsample(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) maps to ``size`` (H, W), half-pixel centres (align_corners=False)."""
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def _to_image_frame(maps: torch.Tensor, frame: AlignedFrame, image_hw: Tuple[int, int]) -> torch.Tensor:
    """Bilinear samples of input-frame maps (C, h, w) at every image pixel's input position: (C, H, W)."""
    height, width = image_hw
    affine = torch.as_tensor(frame.image_to_input(), dtype=torch.float64, device=maps.device)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64, device=maps.device),
                            torch.arange(width, dtype=torch.float64, device=maps.device), indexing="ij")
    in_x = affine[0, 0] * xs + affine[0, 1] * ys + affine[0, 2]
    in_y = affine[1, 0] * xs + affine[1, 1] * ys + affine[1, 2]
    # Input pixel centres are at integers: normalise for grid_sample with align_corners=False.
    grid = torch.stack(((2 * in_x + 1) / frame.width - 1, (2 * in_y + 1) / frame.height - 1), dim=-1)
    sampled = F.grid_sample(maps[None], grid[None].to(maps.dtype), mode="bilinear", padding_mode="border",
                            align_corners=False)
    return sampled[0]
