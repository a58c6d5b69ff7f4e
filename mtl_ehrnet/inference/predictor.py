"""Image-level inference: resize and pad any image, run the network (flip / multi-scale optional),
group poses, and map poses and the class map back to the original image.

``mode="fast"`` (default) is described here; ``mode="reference"`` runs HigherHRNet's own test pipeline
instead (:mod:`mtl_ehrnet.inference.reference_pipeline`; the differences are listed in docs/inference.md).

Coordinates follow the data layer: keypoints have pixel centres at integers, and a stride-``t`` map
is the network input scaled by ``1/t`` in corner coordinates (pixel ``i`` spans ``[i, i + 1)``), so
map position ``u`` is image position ``(u + 0.5) * t / f - 0.5`` for a resize factor ``f``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_ehrnet.data.skeleton import COCO_FLIP_INDEX, check_flip_index
from mtl_ehrnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mtl_ehrnet.inference.class_map import upsampled_argmax
from mtl_ehrnet.inference.deployment import DeploymentPath, candidate_paths, choose_path
from mtl_ehrnet.inference.grouping import group_poses
from mtl_ehrnet.inference.path_tuning import fastest_path
from mtl_ehrnet.inference.reference_grouping import ReferenceGrouping
from mtl_ehrnet.inference.reference_pipeline import ReferencePipeline, check_reference_scales
from mtl_ehrnet.inference.runners import runner_keeping_model

ImageLike = Union[np.ndarray, "PIL.Image.Image"]  # noqa: F821  (Pillow images are accepted too)
STRIDE = 32
# "fast": our resize, pad and map-resolution grouping; "reference": HigherHRNet's test pipeline.
MODES = ("fast", "reference")


@dataclass
class Prediction:
    """One image's result.

    Attributes:
        poses: (N, K, 3) float32 (x, y, value) in image pixels, best first; None without a pose head.
        scores: (N,) float32 pose scores; None without a pose head.
        seg: (H, W) int64 class map at the image's full resolution; None without a seg head.
    """

    poses: Optional[np.ndarray]
    scores: Optional[np.ndarray]
    seg: Optional[np.ndarray]


class Predictor:
    """Runs a pose / segmentation / multi-task model on images of any size and aspect.

    Each image is resized so that its short side is ``input_size * scale`` and padded with black
    (bottom, right) to a multiple of 32; a batch is padded to its largest member. Heatmaps average the stride-2 map
    with the upsampled stride-4 map; flip test averages the mirrored pass's heatmaps (joints swapped
    by ``flip_index``) and concatenates its tags; multi-scale averages heatmaps and segmentation
    logits over scales in the first scale's frame and concatenates tags.

    Args:
        model: returns the dict of the output contract (``"heatmaps"``, ``"heatmaps_lr"``, ``"tags"``,
            ``"seg"``); put in eval mode.
        input_size: short side fed to the network; default the short side of ``model.input_size``.
        flip: flip test.
        scales: factors on ``input_size``; the first is the frame maps are averaged in.
        flip_index: joint permutation under a horizontal mirror (COCO default).
        batch_size: images per forward pass.
        device: default the model's.
        grouping: keyword overrides for :func:`group_poses`.
        precision: ``"fp32"``, ``"bf16"`` (CPU with AMX / AVX-512 BF16, or CUDA), ``"fp16"`` (CUDA),
            ``"int8"`` (ONNX Runtime, needs ``calibration``) or ``"auto"`` (the fastest this machine
            supports, :func:`mtl_ehrnet.inference.deployment.choose_path`). Outputs are float32 either way.
        backend: ``"torch"``, ``"torch.compile"``, ``"onnxruntime"``, ``"tensorrt"`` or ``"auto"``.
        calibration: uint8 RGB images (H, W, 3) to calibrate INT8 on, preprocessed as inference does.
        channels_last: NHWC tensors on the PyTorch backends; default True (faster for these models).
        fold_batchnorm: the PyTorch backends run a copy of ``model`` with its batch norms folded into the
            convolutions (default True: the same outputs up to float rounding, faster); ``model`` itself is
            left unfolded, so weights loaded into it later reach a new ``Predictor``, not this one.
        tune: with ``precision`` or ``backend`` ``"auto"``, build every path they allow here and keep the one
            whose forward pass on this model at this input size and ``batch_size`` is fastest
            (:func:`mtl_ehrnet.inference.path_tuning.fastest_path`; the seconds of each in
            ``path_seconds``), instead of ranking paths by the CPU's flags alone. It costs building each
            candidate (an ONNX export, an INT8 calibration) once, up front.
        half: the same as ``precision="fp16"``.
        compile: the same as ``backend="torch.compile"`` (height and width are dynamic: one compilation
            serves every padded size).
        mode: ``"fast"`` (above) or ``"reference"``: HigherHRNet's test pipeline (short side to
            ``input_size`` rounded up to 64, long side aligned to 64 by one affine warp, maps upsampled to
            the input before grouping, its parser's decisions), image by image; ``grouping`` then overrides
            :class:`ReferenceGrouping` fields, and with several ``scales`` 1 must be among them.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_size: Optional[int] = None,
        flip: bool = False,
        scales: Sequence[float] = (1.0,),
        flip_index: Sequence[int] = COCO_FLIP_INDEX,
        batch_size: int = 8,
        device: Union[str, torch.device, None] = None,
        grouping: Optional[Dict[str, Any]] = None,
        precision: str = "fp32",
        backend: str = "torch",
        calibration: Optional[Sequence[ImageLike]] = None,
        channels_last: Optional[bool] = None,
        fold_batchnorm: bool = True,
        tune: bool = False,
        half: bool = False,
        compile: bool = False,
        mode: str = "fast",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODES)}; got {mode!r}")
        if input_size is None:
            input_size = min(getattr(model, "input_size", (512, 512)))
        if input_size <= 0 or not scales or any(s <= 0 for s in scales) or batch_size < 1:
            raise ValueError("need input_size > 0, positive scales and batch_size >= 1; "
                             f"got {input_size}, {scales}, {batch_size}")
        first = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (
            first.device if first is not None else torch.device("cpu"))
        self.input_size = int(input_size)
        self.flip = flip
        self.scales = tuple(float(s) for s in scales)
        self.flip_index = torch.as_tensor(check_flip_index(flip_index, len(flip_index)), device=self.device)
        self.batch_size = batch_size
        self.grouping = dict(grouping or {})
        self.mode = mode
        self._reference: Optional[ReferencePipeline] = None
        if mode == "reference":
            check_reference_scales(self.scales)
            self._reference = ReferencePipeline(
                self._run_network, input_size=self.input_size, scales=self.scales, flip=flip,
                flip_index=self.flip_index, grouping=ReferenceGrouping.from_overrides(self.grouping),
                device=self.device)
        self._mean = torch.as_tensor(IMAGENET_MEAN, device=self.device).view(3, 1, 1) * 255
        self._std = torch.as_tensor(IMAGENET_STD, device=self.device).view(3, 1, 1) * 255
        precision = "fp16" if half else precision
        backend = "torch.compile" if compile else backend
        self.path: DeploymentPath = choose_path(precision, backend, self.device, calibration=calibration is not None,
                                                channels_last=channels_last, fold_batchnorm=fold_batchnorm)
        candidates = [self.path]
        if tune and "auto" in (precision, backend):
            candidates = candidate_paths(precision, backend, self.path.device, calibration=calibration is not None,
                                         channels_last=channels_last, fold_batchnorm=fold_batchnorm)
        side = math.ceil(self.input_size / STRIDE) * STRIDE
        batches = None
        if any(path.precision == "int8" for path in candidates):
            batches = [
                self._prepare([(_to_tensor(im).to(self.device).float() - self._mean) / self._std], 1.0)[0].cpu().numpy()
                for im in calibration or ()
            ]
        self.model = model.eval().to(self.device)
        #: Seconds of one forward pass per candidate path, when ``tune`` timed them (else empty).
        self.path_seconds: Dict[str, float] = {}
        if len(candidates) > 1:
            tuned = fastest_path(self.model, candidates, (side, side), calibration=batches, batch_size=batch_size)
            self.path, self._network, self.path_seconds = tuned.path, tuned.runner, tuned.seconds
        else:
            self._network = runner_keeping_model(self.model, self.path, (side, side), batches)

    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]]) -> Union[Prediction, List[Prediction]]:
        """Predicts poses and class maps.

        Args:
            images: one uint8 RGB image (H, W, 3) (numpy or Pillow) or a sequence of them, any sizes.

        Returns:
            A ``Prediction`` for one image, a list of them for a sequence.
        """
        single = (isinstance(images, np.ndarray) and images.ndim == 3) or hasattr(images, "getbands")
        batch = [images] if single else list(images)
        results: List[Prediction] = []
        for start in range(0, len(batch), self.batch_size):
            results += self._predict_batch([_to_tensor(im) for im in batch[start : start + self.batch_size]])
        return results[0] if single else results

    @torch.inference_mode()
    def _predict_batch(self, images: List[torch.Tensor]) -> List[Prediction]:
        if self._reference is not None:
            return [Prediction(*self._reference(image)) for image in images]
        sizes = [tuple(im.shape[-2:]) for im in images]
        normalised = [(im.to(self.device).float() - self._mean) / self._std for im in images]
        heat_sum, tags, seg_sum, base = None, [], None, None
        for scale in self.scales:
            out, factors = self._forward_scale(normalised, scale)
            heat, tag, seg = self._merge_flip(out, len(images))
            if base is None:
                base = factors
                heat_shape = heat.shape[-2:] if heat is not None else None
                seg_shape = seg.shape[-2:] if seg is not None else None
            else:
                heat = _to_frame(heat, factors, base, heat_shape) if heat is not None else None
                seg = _to_frame(seg, factors, base, seg_shape) if seg is not None else None
                if tag is not None:
                    b, k, d = tag.shape[0], tag.shape[1], tag.shape[-1]
                    flat = _to_frame(tag.movedim(-1, 2).flatten(1, 2), factors, base, heat_shape)
                    tag = flat.view(b, k, d, *heat_shape).movedim(2, -1)
            heat_sum = heat if heat_sum is None else heat_sum + heat
            seg_sum = seg if seg_sum is None else seg_sum + seg
            if tag is not None:
                tags.append(tag)
        # One scale (the default) needs neither the mean nor the concatenation: each is a whole-map copy.
        n = len(self.scales)
        heat = heat_sum / n if heat_sum is not None and n > 1 else heat_sum
        tag = (tags[0] if len(tags) == 1 else torch.cat(tags, dim=-1)) if tags else None
        results = []
        for i, (height, width) in enumerate(sizes):
            fy, fx = base[i]
            poses = scores = class_map = None
            if heat is not None:
                rows, cols = math.ceil(height * fy / 2), math.ceil(width * fx / 2)
                kps, scores = group_poses(heat[i, :, :rows, :cols], tag[i, :, :rows, :cols], **self.grouping)
                poses = kps.copy()
                poses[..., 0] = (kps[..., 0] + 0.5) * 2 / fx - 0.5
                poses[..., 1] = (kps[..., 1] + 0.5) * 2 / fy - 0.5
            if seg_sum is not None:
                class_map = upsampled_argmax(seg_sum[i], (height, width), (fy / 4, fx / 4)).cpu().numpy()
            results.append(Prediction(poses, scores, class_map))
        return results

    def _forward_scale(
        self, images: List[torch.Tensor], scale: float
    ) -> Tuple[Dict[str, torch.Tensor], List[Tuple[float, float]]]:
        """Resizes (short side ``input_size * scale``), pads and runs the model (and its mirror)."""
        batch, factors = self._prepare(images, scale)
        return self._run_network(batch), factors

    def _prepare(self, images: List[torch.Tensor], scale: float) -> Tuple[torch.Tensor, List[Tuple[float, float]]]:
        """The network's input (B, 3, H, W) (B doubled with flip) and each image's (y, x) resize factors."""
        short = self.input_size * scale
        resized, factors = [], []
        for im in images:
            height, width = im.shape[-2:]
            f = short / min(height, width)
            size = (max(1, round(height * f)), max(1, round(width * f)))
            resized.append(F.interpolate(im[None], size=size, mode="bilinear", align_corners=False, antialias=f < 1)[0])
            factors.append((size[0] / height, size[1] / width))
        pad_h = math.ceil(max(r.shape[-2] for r in resized) / STRIDE) * STRIDE
        pad_w = math.ceil(max(r.shape[-1] for r in resized) / STRIDE) * STRIDE
        # Pad with black, as the reference's warp and the data layer's letterbox do (only the margins are filled).
        black = -self._mean / self._std
        batch = torch.empty((len(resized), 3, pad_h, pad_w), device=self.device)
        for i, r in enumerate(resized):
            height, width = r.shape[-2:]
            batch[i, :, :height, :width] = r
            batch[i, :, height:] = black
            batch[i, :, :height, width:] = black
        if self.flip:
            # Mirroring the padded tensor keeps every map pixel aligned with its mirror exactly.
            batch = torch.cat((batch, batch.flip(-1)))
        return batch, factors

    def _run_network(self, batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The model's outputs (float32) for a normalised float32 batch (B, 3, H, W), run on the
        deployment path."""
        return self._network(batch)

    def _merge_flip(
        self, out: Dict[str, torch.Tensor], n: int
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Heatmaps (B, K, H/2, W/2), tags (B, K, H/2, W/2, D) and seg logits (B, C, H/4, W/4)."""
        heat = tag = seg = None
        if "heatmaps" in out:
            heat, tag = pose_maps(out, self.flip_index if self.flip else None)
        if "seg" in out:
            seg = out["seg"]
            if self.flip:
                seg = mirror_average(seg[:n], seg[n:])
        return heat, tag, seg


def pose_maps(
    outputs: Dict[str, torch.Tensor], flip_index: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The maps grouping reads, from the model's outputs.

    Args:
        outputs: ``"heatmaps"`` (B, K, H/2, W/2), ``"heatmaps_lr"`` and ``"tags"`` (B, K, H/4, W/4).
        flip_index: when given, the second half of the batch is the mirrored pass of the first.

    Returns:
        heatmaps (B', K, H/2, W/2): the stride-2 map averaged with the upsampled stride-4 map (and
        with the mirrored pass); tags (B', K, H/2, W/2, D), upsampled, D = 2 with a mirrored pass.
    """
    size = outputs["heatmaps"].shape[-2:]
    # In place on the upsampled map: the same sum and halving as (heatmaps + upsampled) / 2, one map fewer.
    heat = F.interpolate(outputs["heatmaps_lr"], size=size, mode="bilinear", align_corners=False)
    heat = heat.add_(outputs["heatmaps"]).div_(2)
    tag = F.interpolate(outputs["tags"], size=size, mode="bilinear", align_corners=False)[..., None]
    if flip_index is not None:
        n = heat.shape[0] // 2
        heat = mirror_average(heat[:n], heat[n:], flip_index)
        tag = torch.cat((tag[:n], tag[n:].flip(-2)[:, flip_index]), dim=-1)
    return heat, tag


def mirror_average(
    maps: torch.Tensor, mirrored: torch.Tensor, channel_index: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """The mean of ``maps`` (B, C, H, W) and the maps of the mirrored images turned back: ``mirrored``
    flipped along W, its channels permuted by ``channel_index`` (joints swapped left to right) when given."""
    back = mirrored.flip(-1)
    if channel_index is not None:
        back = back[:, channel_index]
    return (maps + back) / 2


def _to_tensor(image: ImageLike) -> torch.Tensor:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def _sampling_grid(
    out_hw: Tuple[int, int], in_hw: Tuple[int, int], ratio: Tuple[float, float], device: torch.device
) -> torch.Tensor:
    """grid_sample grid (1, H, W, 2) for a map whose position u reads u' = (u + 0.5) * ratio - 0.5
    of an input map of size ``in_hw`` (align_corners=False normalisation)."""
    axes = []
    for n_out, n_in, r in zip(out_hw, in_hw, ratio):
        u = (torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * r - 0.5
        axes.append((2 * u + 1) / n_in - 1)
    gy, gx = torch.meshgrid(axes[0], axes[1], indexing="ij")
    return torch.stack((gx, gy), dim=-1)[None]


def _to_frame(
    maps: torch.Tensor, factors: List[Tuple[float, float]], base: List[Tuple[float, float]], out_hw: torch.Size
) -> torch.Tensor:
    """Resamples each image's maps (B, C, h, w) from its resize factors into the base factors' frame."""
    out = []
    for i in range(maps.shape[0]):
        ratio = (factors[i][0] / base[i][0], factors[i][1] / base[i][1])
        grid = _sampling_grid(tuple(out_hw), tuple(maps.shape[-2:]), ratio, maps.device)
        out.append(F.grid_sample(maps[i : i + 1], grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    return torch.cat(out)
