"""What foreign (timm, torchvision) backbones share: choosing their stride 4/8/16/32 feature levels and
matching a foreign state dict's keys to the wrapped network's.

A wrapper holds the foreign network as ``self.model``; its feature levels are described as
:class:`FeatureLevel` rows in network order, and :func:`select_levels` keeps the last level of each
stride the HRNet body needs, so a stage's final (most processed) map is the tap.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, NamedTuple, Sequence

import torch
from torch import nn

# The HRNet body's four branches (thesis 3.1): taps at these strides, in this order.
STRIDES = (4, 8, 16, 32)
MODEL_PREFIX = "model."


class FeatureLevel(NamedTuple):
    """One feature map a foreign network can return: where it comes from, its stride and channels."""

    name: str
    reduction: int
    channels: int


def build_anywhere(builder: Callable[[], nn.Module]) -> nn.Module:
    """``builder()``, also under a ``torch.device("meta")`` context for builders that compute with tensors
    (torchvision's RegNet widths): those are built on CPU and moved to meta."""
    try:
        return builder()
    except NotImplementedError:
        if torch.get_default_device().type != "meta":
            raise
        with torch.device("cpu"):
            return builder().to("meta")


def select_levels(spec: str, levels: Sequence[FeatureLevel]) -> List[int]:
    """Indices into ``levels`` of the last level of each stride in :data:`STRIDES`, in stride order.

    Raises:
        ValueError: some stride is missing; the message lists every (stride, channels) level offered.
    """
    last = {level.reduction: index for index, level in enumerate(levels)}
    missing = [s for s in STRIDES if s not in last]
    if missing:
        offered = ", ".join(f"{lv.name}: stride {lv.reduction}, {lv.channels} ch" for lv in levels) or "nothing"
        raise ValueError(
            f"backbone {spec!r} offers no feature map at stride(s) {missing}; the HRNet body needs strides "
            f"{list(STRIDES)}. It offers: {offered}"
        )
    return [last[s] for s in STRIDES]


def match_foreign_keys(own_keys: Sequence[str], state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Renames the keys of a foreign state dict to the wrapper's own keys where they correspond.

    A key matches with or without the wrapper's ``model.`` prefix (a bare classifier state dict, or one
    of our checkpoints with ``backbone.`` already stripped), and up to ``.``/``_``: timm's feature
    wrappers flatten ``stages.0`` into ``stages_0``. Keys that match nothing (a classifier, a head the
    features model drops) are kept unchanged so the load report names them as unexpected.
    """
    own = set(own_keys)
    aliases: Dict[str, str] = {}
    ambiguous = set()
    for key in own:
        alias = key[len(MODEL_PREFIX):].replace("_", ".") if key.startswith(MODEL_PREFIX) else key
        if alias in aliases:
            ambiguous.add(alias)
        aliases[alias] = key
    for alias in ambiguous:  # two own keys that differ only in '.'/'_': match those exactly only
        del aliases[alias]
    renamed: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        bare = key[len(MODEL_PREFIX):] if key.startswith(MODEL_PREFIX) else key
        target = MODEL_PREFIX + bare
        if target not in own:
            target = aliases.get(bare.replace("_", "."), key)
        renamed[target] = value
    return renamed
