"""The published checkpoint layouts the converter reads, and how each maps onto our models.

Each layout recognises its files by their keys, says what architecture a file holds (so that a request
for another model is refused by name), and maps every source tensor onto one of ours.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import nn

from mtl_ehrnet.convert.efficientnet_signature import EfficientNetSignature, phi_of
from mtl_ehrnet.convert.hrnet_keys import (
    higher_resolution_head,
    hrnet_stage,
    hrnet_stem,
    strided_transition,
)
from mtl_ehrnet.convert.targets import COPY, FOLD_BIAS, HEATMAP_HALF, Target
from mtl_ehrnet.models.presets import BASELINES
from mtl_ehrnet.models.scaling import branch_widths

State = Mapping[str, torch.Tensor]
Plan = Tuple[Dict[str, Target], Dict[str, str]]


class Identity(NamedTuple):
    """What a file holds.

    Attributes:
        description: e.g. ``"an EfficientHRNet phi=-4 checkpoint (17 keypoints)"``.
        model: our model name for it, or None when no preset has that architecture.
        changes: config fields the weights need (``tf_padding``, ``num_keypoints``...).
    """

    description: str
    model: Optional[str]
    changes: Dict[str, Any]


class Layout:
    """Base: a layout's name (``source=`` value), where its files come from, and its key mapping."""

    name = ""
    origin = ""

    def matches(self, keys: List[str]) -> bool:
        raise NotImplementedError

    def identify(self, state: State) -> Identity:
        raise NotImplementedError

    def plan(self, state: State, model: nn.Module) -> Plan:
        """Source key -> our target for every tensor it maps, and source key -> why, for those it drops."""
        raise NotImplementedError


def _channels(state: State, key: str) -> int:
    return int(state[key].shape[0]) if key in state else 0


def _count(keys: List[str], pattern: str) -> int:
    """Distinct values of the first group of ``pattern`` over ``keys`` (blocks, modules...)."""
    return len({m.group(1) for m in (re.match(pattern, k) for k in keys) if m})


def _pose_head_plan(state: State, model: nn.Module, key: str, ours: str) -> Tuple[Optional[Target], str]:
    """HigherHRNet-style head: the stride-2 conv may carry tags we do not predict (unused at inference)."""
    k = model.config.num_keypoints
    if ours.startswith("heads.pose.final_hr.") and state[key].shape[0] == 2 * k:
        return Target(ours, HEATMAP_HALF), f"channels {k}-{2 * k - 1} (stride-2 tags, unused at inference) dropped"
    return Target(ours), ""


class HigherHRNetLayout(Layout):
    name = "higherhrnet"
    origin = "HRNet/HigherHRNet-Human-Pose-Estimation (pose_higher_hrnet.py)"

    def matches(self, keys: List[str]) -> bool:
        return "transition1.0.0.weight" in keys and "deconv_layers.0.0.0.weight" in keys

    def identify(self, state: State) -> Identity:
        width = _channels(state, "transition1.0.0.weight")
        keypoints = _channels(state, "final_layers.1.weight")
        name = f"higherhrnet_w{width}"
        changes = {"num_keypoints": keypoints} if keypoints != 17 else {}
        return Identity(
            f"a HigherHRNet-W{width} checkpoint ({keypoints} keypoints)", name if name in BASELINES else None, changes
        )

    def plan(self, state: State, model: nn.Module) -> Plan:
        targets: Dict[str, Target] = {}
        notes: Dict[str, str] = {}
        for key in state:
            ours = hrnet_stem(key) or strided_transition(key) or hrnet_stage(key) or higher_resolution_head(key)
            if ours is None:
                continue
            targets[key], note = _pose_head_plan(state, model, key, ours)
            if note:
                notes[key] = note
        return targets, notes


class HRNetSegLayout(Layout):
    name = "hrnet_seg"
    origin = "HRNet/HRNet-Semantic-Segmentation, branch pytorch-v1.1 (seg_hrnet.py)"

    def matches(self, keys: List[str]) -> bool:
        return "transition1.0.0.weight" in keys and "last_layer.0.weight" in keys

    def identify(self, state: State) -> Identity:
        keys = list(state)
        widths = tuple(_channels(state, f"stage4.0.branches.{b}.0.conv1.weight") for b in range(4))
        modules = tuple(_count(keys, rf"stage{s}\.(\d+)\.") for s in (2, 3, 4))
        blocks = _count(keys, r"stage2\.0\.branches\.0\.(\d+)\.")
        stage1 = (_count(keys, r"layer1\.(\d+)\."), _channels(state, "layer1.0.conv1.weight"))
        classes = _channels(state, "last_layer.3.weight")
        name = None
        for candidate, preset in BASELINES.items():
            config = preset()
            same = (config.body.widths, config.body.modules, config.body.blocks) == (widths, modules, blocks)
            if "seg" in config.tasks and same and (config.stage1_blocks, config.stage1_channels) == stage1:
                name = candidate
        what = (
            f"HRNetV2 segmentation checkpoint (widths {list(widths)}, modules {list(modules)}, {blocks} blocks, "
            f"stage 1 {stage1[0]} x {stage1[1]}, {classes} classes)"
        )
        changes = {"num_classes": classes} if classes != 19 else {}
        return Identity(f"an {what}" + (f", our {name}" if name else ""), name, changes)

    def plan(self, state: State, model: nn.Module) -> Plan:
        targets: Dict[str, Target] = {}
        for key in state:
            ours = hrnet_stem(key) or strided_transition(key) or hrnet_stage(key) or _seg_last_layer(key)
            if ours is not None:
                targets[key] = Target("heads.seg.mix.1", FOLD_BIAS) if key == "last_layer.0.bias" else Target(ours)
        return targets, {}


_SEG_LAST_LAYER = re.compile(r"last_layer\.([013])\.(\w+)")
_SEG_HEAD = {"0": "heads.seg.mix.0", "1": "heads.seg.mix.1", "3": "heads.seg.classifier"}


def _seg_last_layer(key: str) -> Optional[str]:
    """``last_layer`` = Sequential(1x1 conv with bias, BN, ReLU, classifier conv) -> ``heads.seg``."""
    match = _SEG_LAST_LAYER.fullmatch(key)
    return f"{_SEG_HEAD[match.group(1)]}.{match.group(2)}" if match else None


_EHR_TRANSITION = re.compile(r"trans([123])_branch([1-4])\.([01])\.(\w+)")
_EHR_FEATURE = re.compile(r"features\.(\d+)\.(.+)")
_EHR_BLOCK_PART = re.compile(r"conv\.(\d+)\.(.+)")


class EfficientHRNetLayout(Layout):
    name = "ehr"
    origin = "TeCSAR-UNCC/EfficientHRNet (lib/models/pose_higher_hrnet.py)"

    def matches(self, keys: List[str]) -> bool:
        return "trans1_branch1.0.weight" in keys and "features.0.1.weight" in keys

    def identify(self, state: State) -> Identity:
        widths = tuple(_channels(state, f"trans3_branch{b}.0.weight") for b in range(1, 5))
        phi = next((p for p in range(-12, 9) if branch_widths(p) == widths), None)
        trunk = _ehr_trunk(state)
        trunk_phi = phi_of(trunk)
        keypoints = _channels(state, "final_layers.0.weight") // 2
        stride2 = _channels(state, "final_layers.1.weight")
        tags = ", stride-2 tags too" if stride2 == 2 * keypoints else ""
        changes: Dict[str, Any] = {"tf_padding": True}
        if keypoints != 17:
            changes["num_keypoints"] = keypoints
        if phi is not None and phi == trunk_phi:
            return Identity(
                f"an EfficientHRNet phi={phi} checkpoint ({keypoints} keypoints{tags})", f"pose_h{phi}", changes
            )
        return Identity(
            f"an EfficientHRNet checkpoint of no known phi (HRNet widths {list(widths)}, EfficientNet "
            f"{trunk.describe()})",
            None,
            changes,
        )

    def plan(self, state: State, model: nn.Module) -> Plan:
        blocks = _our_mbconv_blocks(model)
        targets: Dict[str, Target] = {}
        notes: Dict[str, str] = {}
        for key in state:
            target = _ehr_transition(key) or _ehr_feature(key, blocks) or _ehr_hrnet(key)
            if target is None:
                continue
            if target.op == COPY and target.key.startswith("heads.pose."):
                target, note = _pose_head_plan(state, model, key, target.key)
                if note:
                    notes[key] = note
            targets[key] = target
        return targets, notes


def _ehr_hrnet(key: str) -> Optional[Target]:
    ours = hrnet_stage(key) or higher_resolution_head(key)
    return Target(ours) if ours else None


def _ehr_transition(key: str) -> Optional[Target]:
    """``trans{t}_branch{b}`` = Sequential(conv with bias, BN, ReLU); branch ``t + 1`` is stage t's new one."""
    match = _EHR_TRANSITION.fullmatch(key)
    if not match:
        return None
    t, b, part, tail = int(match.group(1)), int(match.group(2)), match.group(3), match.group(4)
    if b > t + 1:
        return None
    module = f"body.stages.{t - 1}." + ("new_branch_transition" if b == t + 1 else f"transitions.{b - 1}")
    if part == "0" and tail == "bias":
        return Target(f"{module}.1", FOLD_BIAS)
    return Target(f"{module}.{part}.{tail}")


def _our_mbconv_blocks(model: nn.Module) -> List[Tuple[str, int]]:
    """Our MBConv blocks in order, as (key prefix, number of sub-modules: 4 with expansion, 3 without)."""
    features = getattr(getattr(model, "backbone", None), "features", None)
    if features is None:
        return []
    return [
        (f"backbone.features.{s}.{i}.block", len(block.block))
        for s in range(1, len(features))
        for i, block in enumerate(features[s])
        if hasattr(block, "block")
    ]


def _ehr_feature(key: str, blocks: List[Tuple[str, int]]) -> Optional[Target]:
    """``features.{n}``: 0 = ZeroPad2d/Conv/BN/Swish stem; n >= 1 = the n-th MBConv block."""
    match = _EHR_FEATURE.fullmatch(key)
    if not match:
        return None
    index, rest = int(match.group(1)), match.group(2)
    if index == 0:
        part, _, tail = rest.partition(".")
        return Target(f"backbone.features.0.{int(part) - 1}.{tail}") if part in ("1", "2") else None
    if index > len(blocks):
        return None
    prefix, parts = blocks[index - 1]
    match = _EHR_BLOCK_PART.fullmatch(rest)
    if not match:
        return None
    j, tail = int(match.group(1)), match.group(2)
    padded = parts - 2  # ConvBNReLU units (ZeroPad2d, Conv, BN, Swish): expansion (if any) and depthwise
    if j < padded:
        sub, _, tail = tail.partition(".")
        return Target(f"{prefix}.{j}.{int(sub) - 1}.{tail}") if sub in ("1", "2") else None
    if j == padded:  # SqueezeExcitation: se = (pool, reduce conv, Swish, expand conv, sigmoid)
        fc = {"se.1.": "fc1.", "se.3.": "fc2."}
        head = next((h for h in fc if tail.startswith(h)), None)
        return Target(f"{prefix}.{j}.{fc[head]}{tail[len(head) :]}") if head else None
    if j == padded + 1:  # the projection conv, then its BN as a sibling
        return Target(f"{prefix}.{j}.0.{tail}")
    if j == padded + 2:
        return Target(f"{prefix}.{j - 1}.1.{tail}")
    return None


def _ehr_trunk(state: State) -> EfficientNetSignature:
    """The signature of an EfficientHRNet file's EfficientNet, read block by block.

    A stage starts where the output width, the depthwise kernel or the presence of an expansion conv
    changes (at phi = -4 stages 1 and 2 are both 16 wide, but only stage 2 expands).
    """
    blocks = []
    index = 1
    while f"features.{index}.conv.0.1.weight" in state:
        expanded = (
            int(state[f"features.{index}.conv.0.1.weight"].shape[-1]) == 1
            and f"features.{index}.conv.1.1.weight" in state
        )
        depthwise = state[f"features.{index}.conv.{int(expanded)}.1.weight"]
        project = state[f"features.{index}.conv.{int(expanded) + 2}.weight"]
        blocks.append((int(project.shape[0]), int(depthwise.shape[-1]), expanded))
        index += 1
    widths: List[int] = []
    depths: List[int] = []
    for position, block in enumerate(blocks):
        if position == 0 or block != blocks[position - 1]:
            widths.append(block[0])
            depths.append(0)
        depths[-1] += 1
    return EfficientNetSignature(_channels(state, "features.0.1.weight"), tuple(widths), tuple(depths))
