"""Replaying a sample's geometric augmentation on teacher maps computed before augmentation.

Teacher outputs are cached for the letterboxed, un-augmented image (affine ``A_t``: original pixels ->
teacher input pixels). A training sample carries its own affine ``A`` (original -> student input). A
student map at stride ``s`` therefore reads the teacher map at ``A_t A^-1`` of its pixel centres; when
that chain mirrors (det A det A_t < 0: a mirrored sample read from an un-mirrored entry) the left and right
joint channels are also swapped.

This runs on the training device at every step of a cached run: nothing here reads a value back to the host,
and constants are made on the device (``torch.tensor(..., device="cuda")`` copies from the host and waits for
the GPU), so that the host keeps queueing work ahead of it.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from distill.cache_codec import CACHED_STRIDES, QUANTISED_KEYS, SCALE, dequantise


def _homogeneous(affine: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) -> (B, 3, 3)."""
    bottom = torch.zeros_like(affine[:, :1])
    bottom[:, 0, 2] = 1.0
    return torch.cat([affine, bottom], dim=1)


def _invert(affine: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) -> (B, 2, 3): the inverse map, in closed form (``torch.linalg.inv`` checks for a singular
    matrix, and that check reads a flag back from the GPU)."""
    a, b, tx = affine[:, 0].unbind(-1)
    c, d, ty = affine[:, 1].unbind(-1)
    det = a * d - b * c
    inverse = torch.stack([d, -b, b * ty - d * tx, -c, a, c * tx - a * ty], dim=-1) / det[:, None]
    return inverse.reshape(-1, 2, 3)


def _determinant(affine: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) -> (B,): the determinant of the linear part (< 0 for a mirroring map)."""
    return affine[:, 0, 0] * affine[:, 1, 1] - affine[:, 0, 1] * affine[:, 1, 0]


def _stride_to_input(stride: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 2, 3): map pixel centre u at stride s -> input pixel (u + 0.5) * s - 0.5 (the data layer's
    convention)."""
    scale = torch.eye(2, 3, dtype=dtype, device=device) * stride
    scale[:, 2] = 0.5 * stride - 0.5
    return scale[None]


def _map_to_map(source_affine: torch.Tensor, source_stride: int, target_affine: torch.Tensor,
                target_stride: int) -> torch.Tensor:
    """(B, 3, 3) homogeneous map from pixels of one network's map to pixels of another's: source map pixel ->
    source input -> original -> target input -> target map pixel.

    Args:
        source_affine, target_affine: (B, 2, 3) float32, original -> each network's input pixels.
        source_stride, target_stride: each map's stride in its network's input.
    """
    dtype, device = source_affine.dtype, source_affine.device
    return (
        _homogeneous(_invert(_stride_to_input(target_stride, dtype, device)))
        @ _homogeneous(target_affine)
        @ _homogeneous(_invert(source_affine))
        @ _homogeneous(_stride_to_input(source_stride, dtype, device))
    )


def replay_affine(
    maps: torch.Tensor,
    cached_affine: torch.Tensor,
    sample_affine: torch.Tensor,
    out_hw: Tuple[int, int],
    out_stride: int,
    cached_stride: int,
    flip_index: Optional[Union[Sequence[int], torch.Tensor]] = None,
    extent: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Warps cached teacher maps into the frame of augmented student maps.

    Args:
        maps: (B, C, h, w) cached teacher maps at stride ``cached_stride`` of the teacher's input.
        cached_affine: (B, 2, 3) original -> teacher input pixels.
        sample_affine: (B, 2, 3) original -> student input pixels (the sample's ``affine``).
        out_hw: (H, W) of the student map, at stride ``out_stride`` of the student input.
        flip_index: (C,) channel permutation applied where the chain mirrors: a mirrored sample read from an
            un-mirrored entry or the reverse (joint maps); None for class maps. A tensor already on the maps'
            device is used as it is; a sequence is copied there.
        extent: (B, 2) height and width of each sample's map within ``maps`` when maps of several sizes
            were zero-padded to one shape; None: the whole map.
    Returns:
        warped (B, C, H, W) and valid (B, H, W): 1 where the student pixel falls inside the cached map.
    """
    dtype, device = torch.float32, maps.device
    b = maps.shape[0]
    height, width = out_hw
    h_t, w_t = maps.shape[-2:]
    cached_affine, sample_affine = cached_affine.to(device, dtype), sample_affine.to(device, dtype)
    chain = _map_to_map(sample_affine, out_stride, cached_affine, cached_stride)  # student map -> teacher map
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                            torch.arange(width, dtype=dtype, device=device), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3, 1)  # (1, HW, 3, 1)
    source = (chain[:, None] @ points)[..., :2, 0]  # (B, HW, 2) teacher map pixel coordinates
    grid = torch.stack([(2 * source[..., 0] + 1) / w_t - 1, (2 * source[..., 1] + 1) / h_t - 1], dim=-1)
    grid = grid.reshape(b, height, width, 2)
    warped = F.grid_sample(maps.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if extent is None:
        valid = ((grid.abs() <= 1).all(dim=-1)).to(dtype)
    else:
        size = extent.to(device, dtype)[:, None, None, :].flip(-1)  # (B, 1, 1, 2) as (w, h)
        inside = (source.reshape(b, height, width, 2) >= -0.5) & (source.reshape(b, height, width, 2) <= size - 0.5)
        valid = inside.all(dim=-1).to(dtype)
    if flip_index is not None:
        mirrored = _determinant(sample_affine) * _determinant(cached_affine) < 0
        index = torch.as_tensor(flip_index, device=device)
        warped = torch.where(mirrored[:, None, None, None], warped[:, index], warped)
    return warped, valid


def replay_people(
    people: torch.Tensor,
    cached_affine: torch.Tensor,
    sample_affine: torch.Tensor,
    out_hw: Tuple[int, int],
    out_stride: int,
    cached_stride: int,
    flip_index: Union[Sequence[int], torch.Tensor],
) -> torch.Tensor:
    """Moves people found on cached teacher maps into the frame of augmented student maps, as
    associative-embedding targets.

    Args:
        people: (B, P, K, 3) x, y in pixels of the cached maps (stride ``cached_stride`` of the teacher's
            input) and a visible flag; rows of zeros pad an image's people to P.
        cached_affine, sample_affine: (B, 2, 3) as :func:`replay_affine`'s.
        out_hw: (H, W) of the student map, at stride ``out_stride`` of the student input.
        flip_index: (K,) joint permutation applied where the chain mirrors.
    Returns:
        (B, P, K, 2) int64: flat index ``y * W + x`` of each joint's nearest student map pixel and its visible
        flag, 0 where the joint falls outside the student's map (the ``joints`` format).
    """
    dtype, device = torch.float32, people.device
    height, width = out_hw
    cached_affine, sample_affine = cached_affine.to(device, dtype), sample_affine.to(device, dtype)
    chain = _map_to_map(cached_affine, cached_stride, sample_affine, out_stride)  # teacher map -> student map
    b, p, k = people.shape[:3]
    points = torch.cat([people[..., :2].float(), torch.ones_like(people[..., :1], dtype=dtype)],
                       dim=-1).reshape(b, -1, 3, 1)
    moved = (chain[:, None] @ points)[..., :2, 0].round().reshape(b, p, k, 2)
    x, y = moved.unbind(-1)
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    visible = (people[..., 2] > 0) & inside
    flat = y.clamp(0, height - 1).long() * width + x.clamp(0, width - 1).long()
    joints = torch.stack([flat, visible.long()], dim=-1)
    mirrored = _determinant(sample_affine) * _determinant(cached_affine) < 0
    index = torch.as_tensor(flip_index, device=device)
    return torch.where(mirrored[:, None, None, None], joints[:, :, index], joints)


# Stride of the student map each replayed key is read at (the cache holds each at that stride of the teacher's
# input, :data:`distill.cache_codec.CACHED_STRIDES`).
REPLAYED_STRIDES = {"heatmaps": 2, "heatmaps_lr": 4, "tags": 4, "seg": 4}
CACHED_STRIDE = 4  # of the people and of ``valid_lr``
JOINT_KEYS = ("heatmaps", "heatmaps_lr", "tags")
BLEND = "blend_"  # key prefix of the second entry of a sample blended from two cached sizes


def replay_cached(
    cached: Dict[str, torch.Tensor], sample_affine: torch.Tensor, input_hw: Tuple[int, int],
    flip_index: Union[Sequence[int], torch.Tensor],
) -> Dict[str, torch.Tensor]:
    """Every cached teacher map warped into the frame of the augmented student input.

    Args:
        cached: a batch of cache entries (:mod:`distill.cache_codec`): uint8 maps by key (``heatmaps``
            (B, K, 2h, 2w), ``heatmaps_lr`` (B, K, h, w), ``seg``, and ``tags`` where cached), each with its
            ``<key>_scale`` (B, C, 2); ``people`` (B, P, K, 3) where cached; ``affine`` (B, 2, 3), original ->
            teacher input pixels, and, from a cache of several sizes, ``letterbox`` (B,): each sample's letterbox size,
            its maps zero-padded at the right and bottom to the largest. A blended batch also carries a second
            size's maps as ``blend_<key>`` with its ``blend_affine`` and ``blend_letterbox``, and
            ``blend_weight`` (B,): each of those maps becomes ``(1 - w) * first + w * second`` once both are
            warped (the people are the first size's).
        sample_affine: (B, 2, 3) original -> student input pixels.
        input_hw: (H, W) of the student input.
        flip_index: (K,) joint permutation applied to the joint maps of mirrored samples (best a tensor on the
            maps' device: see :func:`replay_affine`).
    Returns:
        the warped maps by key at the student's map sizes, ``joints`` (B, P, K, 2) where people were cached
        (:func:`replay_people`), and ``valid_lr``
        (B, H/4, W/4): 1 where a stride-4 student pixel falls inside the cached maps (the first size's; both
        letterboxes hold the whole image).
    """
    second = {key[len(BLEND):]: value for key, value in cached.items() if key.startswith(BLEND)}
    replayed = _replay_entry({k: v for k, v in cached.items() if not k.startswith(BLEND)}, sample_affine, input_hw,
                             flip_index)
    if second:
        weight = second.pop("weight").to(replayed["valid_lr"].device, torch.float32)[:, None, None, None]
        mixed = _replay_entry(second, sample_affine, input_hw, flip_index)
        for key, value in mixed.items():
            if key not in ("valid_lr", "joints"):
                replayed[key] = torch.lerp(replayed[key], value, weight)
    return replayed


def _replay_entry(
    cached: Dict[str, torch.Tensor], sample_affine: torch.Tensor, input_hw: Tuple[int, int],
    flip_index: Union[Sequence[int], torch.Tensor],
) -> Dict[str, torch.Tensor]:
    """:func:`replay_cached` for one entry per sample (no ``blend_`` keys)."""
    height, width = input_hw
    replayed: Dict[str, torch.Tensor] = {}
    for key in QUANTISED_KEYS:
        if key not in cached:
            continue
        maps = dequantise(cached[key], cached[key + SCALE])
        flip = flip_index if key in JOINT_KEYS else None
        source, stride = CACHED_STRIDES[key], REPLAYED_STRIDES[key]
        extent = None
        if "letterbox" in cached:
            extent = (cached["letterbox"].float() / source)[:, None].expand(-1, 2)
        replayed[key], valid = replay_affine(maps, cached["affine"], sample_affine, (height // stride, width // stride),
                                             stride, source, flip, extent)
        if stride == CACHED_STRIDE:
            replayed["valid_lr"] = valid
    if "people" in cached:
        replayed["joints"] = replay_people(cached["people"], cached["affine"], sample_affine,
                                           (height // CACHED_STRIDE, width // CACHED_STRIDE), CACHED_STRIDE,
                                           CACHED_STRIDE, flip_index)
    return replayed
