"""What a teacher-cache entry stores, and in what form: the maps distillation reads, one byte a value.

A teacher's answer for one image holds heatmaps at strides 2 and 4, tags and class logits. The cache keeps
(:func:`encode_entry`):

- the heatmaps at both strides and the class logits, each channel quantised linearly to uint8 over its own
  range (:func:`quantise`);
- the teacher's people instead of its tags for pseudo-keypoint tag distillation: the confident people
  grouped from its stride-4 maps at build time (``people``: (P, K, 3) x, y in map pixels and a visible
  flag), so that no training step groups on the host; for relational tag distillation the tags
  themselves, quantised like the maps; nothing for none;
- the letterbox affine.

On disk the byte maps are deflated (:func:`pack`): heatmaps are near zero almost everywhere, so the
stride-2 ones, the largest, shrink about 4x. Replaying the stride-2 target from the stride-4 maps instead
would save those bytes but blurs the target, which cost the students mIoU.

An entry takes a fifth to a sixth of the bytes of every map in fp16; docs/results.md ("Teacher cache") has the
measurements.
"""
from __future__ import annotations

import io
import zlib
from typing import Dict, Tuple

import torch

from distill.kd_losses import tag_form
from distill.pose_kd import PSEUDO_THRESHOLDS, pseudo_people

# uint8 maps, each with its ``<key>_scale``, and the stride of the teacher's input they are at
QUANTISED_KEYS = ("heatmaps", "heatmaps_lr", "tags", "seg")
CACHED_STRIDES = {"heatmaps": 2, "heatmaps_lr": 4, "tags": 4, "seg": 4}
SCALE = "_scale"
SHAPE = "_shape"  # a packed map's (C, h, w)


def quantise(maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel linear uint8 quantisation.

    Args:
        maps: (C, h, w) float.
    Returns:
        codes (C, h, w) uint8 and scale (C, 2) float32: each channel's offset and step, so that
        ``codes * step + offset`` is within half a step of ``maps``.
    """
    flat = maps.float().flatten(1)
    low, high = flat.amin(dim=1), flat.amax(dim=1)
    step = ((high - low) / 255).clamp(min=1e-12)
    codes = ((maps.float() - low[:, None, None]) / step[:, None, None]).round().clamp(0, 255).to(torch.uint8)
    return codes, torch.stack([low, step], dim=1)


def dequantise(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) uint8 codes and (B, C, 2) scales -> (B, C, h, w) float32 on the codes' device."""
    scale = scale.to(codes.device, torch.float32)
    return codes.float() * scale[..., 1, None, None] + scale[..., 0, None, None]


def encode_entry(
    outputs: Dict[str, torch.Tensor], affine: torch.Tensor, tag_kd: str = "pseudo"
) -> Dict[str, torch.Tensor]:
    """One image's cache entry from the teachers' merged outputs for it.

    Args:
        outputs: one image's maps (no batch dimension): ``heatmaps`` (K, 2h, 2w), ``heatmaps_lr`` and ``tags``
            (K, h, w) from a pose teacher, ``seg`` (C, h, w) from a segmentation teacher; other keys are
            dropped.
        affine: (2, 3) original -> letterbox pixels.
        tag_kd: the tag KD loss the entry serves (:mod:`distill.kd_losses`): its ``tag_form`` says whether the
            teacher's people grouped now (``pseudo``), its raw tags (``relational``) or neither are kept.
    Returns:
        the entry, on the CPU.
    """
    form = tag_form(tag_kd)
    entry: Dict[str, torch.Tensor] = {"affine": affine.float().cpu()}
    keys = ["heatmaps", "heatmaps_lr", "seg"] + (["tags"] if form == "tags" else [])
    for key in keys:
        if key in outputs:
            entry[key], entry[key + SCALE] = (t.cpu() for t in quantise(outputs[key].detach()))
    if form == "people" and "heatmaps_lr" in outputs:
        entry["people"] = pseudo_people(outputs["heatmaps_lr"][None], outputs["tags"][None], **PSEUDO_THRESHOLDS)[0]
    return entry


def entry_bytes(entry: Dict[str, torch.Tensor]) -> int:
    """Bytes of ``entry`` as ``torch.save`` writes it (the cache writes ``pack(entry)``)."""
    buffer = io.BytesIO()
    torch.save(entry, buffer)
    return buffer.tell()


def pack(entry: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The entry as written: every byte map deflated to a 1-D uint8 tensor, its shape as ``<key>_shape``."""
    packed = dict(entry)
    for key in QUANTISED_KEYS:
        if key in entry:
            codes = entry[key].contiguous()
            deflated = zlib.compress(codes.numpy().tobytes(), 1)
            packed[key] = torch.frombuffer(bytearray(deflated), dtype=torch.uint8)
            packed[key + SHAPE] = torch.tensor(codes.shape)
    return packed


def unpack(packed: Dict[str, torch.Tensor], source: str = "teacher cache entry") -> Dict[str, torch.Tensor]:
    """:func:`pack`'s inverse; ``source`` names the entry in the error raised when a map is damaged."""
    entry = {key: value for key, value in packed.items() if not key.endswith(SHAPE)}
    for key in QUANTISED_KEYS:
        if key + SHAPE in packed:
            shape = packed[key + SHAPE].tolist()
            try:
                raw = zlib.decompress(packed[key].numpy().tobytes())
            except zlib.error as error:
                raise ValueError(f"{source}: its {key!r} map is damaged ({error}); rebuild the cache") from None
            entry[key] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(shape)
    return entry
