"""Key renaming shared by the HRNet-family layouts (HigherHRNet, HRNet-seg, EfficientHRNet).

The reference code names a conv and its BatchNorm as siblings (``conv1`` / ``bn1``); our modules pair
them in a ``Conv2dNormActivation`` (``conv1.0`` / ``conv1.1``). Every function returns None for a key
it does not know, so that the caller can report it instead of guessing.
"""

from __future__ import annotations

import re
from typing import Optional

_BLOCK = re.compile(r"(conv|bn)([123])\.(\w+)")
_SHORTCUT = re.compile(r"downsample\.([01])\.(\w+)")
_STAGE = re.compile(r"stage([234])\.(\d+)\.(branches|fuse_layers)\.(\d+)\.(\d+)\.(.+)")
_STEM = {
    "conv1": "backbone.stem.0.0",
    "bn1": "backbone.stem.0.1",
    "conv2": "backbone.stem.1.0",
    "bn2": "backbone.stem.1.1",
}
_STRIDED_TRANSITION = re.compile(r"transition([123])\.(\d+)\.(.+)")
_DECONV = re.compile(r"deconv_layers\.0\.(\d+)\.(.+)")


def residual_block(rest: str) -> Optional[str]:
    """A BASIC / BOTTLENECK block's key below the block (``bn2.weight`` -> ``conv2.1.weight``)."""
    match = _BLOCK.fullmatch(rest)
    if match:
        kind, index, tail = match.groups()
        return f"conv{index}.{0 if kind == 'conv' else 1}.{tail}"
    match = _SHORTCUT.fullmatch(rest)
    return f"shortcut.{match.group(1)}.{match.group(2)}" if match else None


def hrnet_stage(key: str) -> Optional[str]:
    """``stage{2,3,4}.*`` (HRNet modules: branches and fusion) -> ``body.stages.{0,1,2}.modules_.*``."""
    match = _STAGE.fullmatch(key)
    if not match:
        return None
    stage, module, part, a, b, rest = match.groups()
    prefix = f"body.stages.{int(stage) - 2}.modules_.{module}.{part}.{a}.{b}"
    if part == "branches":
        block = residual_block(rest)
        return f"{prefix}.{block}" if block else None
    if int(b) > int(a):  # upsampling path: Sequential(conv, bn, upsample) -> Sequential(Conv2dNormActivation, ...)
        head, _, tail = rest.partition(".")
        return f"{prefix}.0.{head}.{tail}" if head in ("0", "1") else None
    return f"{prefix}.{rest}"  # downsampling path: the same Sequential(Sequential(conv, bn[, relu])) nesting


def hrnet_stem(key: str) -> Optional[str]:
    """HRNet's two stride-2 convs and stage 1 (``conv1 bn1 conv2 bn2 layer1.*``) -> ``backbone.*``."""
    head, _, tail = key.partition(".")
    if head in _STEM:
        return f"{_STEM[head]}.{tail}"
    if head == "layer1":
        index, _, rest = tail.partition(".")
        block = residual_block(rest)
        return f"backbone.stage1.{index}.{block}" if index.isdigit() and block else None
    return None


def strided_transition(key: str) -> Optional[str]:
    """``transition{t}.{i}.*`` -> stage ``t - 1``'s transition ``i``, or its new branch when ``i == t``.

    Stage t enters with t branches; branch t is new (grown from the lowest-resolution one by a strided
    conv, nested one Sequential deeper in the reference).
    """
    match = _STRIDED_TRANSITION.fullmatch(key)
    if not match:
        return None
    t, index, rest = int(match.group(1)), int(match.group(2)), match.group(3)
    prefix = f"body.stages.{t - 1}"
    if index == t:
        return f"{prefix}.new_branch_transition.{rest[2:]}" if rest.startswith("0.") else None
    return f"{prefix}.transitions.{index}.{rest}" if index < t else None


def higher_resolution_head(key: str) -> Optional[str]:
    """HigherHRNet's ``final_layers.{0,1}`` and ``deconv_layers.0`` -> ``heads.pose.*``."""
    for source, ours in (("final_layers.0.", "heads.pose.final_lr."), ("final_layers.1.", "heads.pose.final_hr.")):
        if key.startswith(source):
            return ours + key[len(source) :]
    match = _DECONV.fullmatch(key)
    if not match:
        return None
    index, rest = int(match.group(1)), match.group(2)
    if index == 0:  # Sequential(ConvTranspose2d, BatchNorm2d, ReLU)
        head, _, tail = rest.partition(".")
        return f"heads.pose.deconv.{head}.{tail}" if head in ("0", "1") else None
    if not rest.startswith("0."):  # each BASIC block sits in a Sequential of its own
        return None
    block = residual_block(rest[2:])
    return f"heads.pose.deconv.{index + 2}.{block}" if block else None
