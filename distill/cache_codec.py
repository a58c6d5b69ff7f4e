"""What a teacher-cache entry stores, and in what form: the stride-4 maps distillation reads, one byte a value.

A teacher's answer for one image holds heatmaps at strides 2 and 4, tags and class logits. The cache keeps
(:func:`encode_entry`):

- the stride-4 heatmaps and class logits, each channel quantised linearly to uint8 over its own range
  (:func:`quantise`); the stride-2 heatmap target is replayed from the stride-4 maps;
- the teacher's people instead of its tags for pseudo-keypoint tag distillation: the confident people
  grouped from its stride-4 maps at build time (``people``: (P, K, 3) x, y in map pixels and a visible
  flag), so that no training step groups on the host; for relational tag distillation the tags
  themselves, quantised like the maps; nothing for none;
- the letterbox affine.

Written by ``torch.save``, an entry of the quick start's teachers (17 joints, 19 classes) at its 192
letterbox takes 86 kB against 560 kB for every map in fp16 at both strides, 6.5x less; at the 576 letterbox
of a 384 student 0.75 MB against 5.0 MB. Relational tag distillation, which stores the tags too, saves 4.5x.
"""
from __future__ import annotations

import io
from typing import Dict, Tuple

import torch

from distill.pose_kd import PSEUDO_THRESHOLDS, pseudo_people

QUANTISED_KEYS = ("heatmaps_lr", "tags", "seg")  # uint8 maps at stride 4, each with its ``<key>_scale``
SCALE = "_scale"
TAG_FORMS = {"pseudo": "people", "relational": "tags", "none": None}


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
        outputs: one image's maps (no batch dimension): ``heatmaps_lr`` and ``tags`` (K, h, w) from a pose
            teacher, ``seg`` (C, h, w) from a segmentation teacher, at stride 4; other keys are dropped.
        affine: (2, 3) original -> letterbox pixels.
        tag_kd: which tag distillation the entry serves (``pseudo``, ``relational`` or ``none``).
    Returns:
        the entry, on the CPU.
    """
    if tag_kd not in TAG_FORMS:
        raise ValueError(f"tag_kd must be one of {tuple(TAG_FORMS)}, got {tag_kd!r}")
    entry: Dict[str, torch.Tensor] = {"affine": affine.float().cpu()}
    keys = ["heatmaps_lr", "seg"] + (["tags"] if tag_kd == "relational" else [])
    for key in keys:
        if key in outputs:
            entry[key], entry[key + SCALE] = (t.cpu() for t in quantise(outputs[key].detach()))
    if tag_kd == "pseudo" and "heatmaps_lr" in outputs:
        entry["people"] = pseudo_people(outputs["heatmaps_lr"][None], outputs["tags"][None], **PSEUDO_THRESHOLDS)[0]
    return entry


def entry_bytes(entry: Dict[str, torch.Tensor]) -> int:
    """Bytes of an entry as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(entry, buffer)
    return buffer.tell()
