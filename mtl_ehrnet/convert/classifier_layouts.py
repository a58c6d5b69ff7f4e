"""ImageNet EfficientNet classifiers as sources: torchvision's ``efficientnet_b*`` and timm's
``efficientnet_b*`` / ``tf_efficientnet_b*`` (TensorFlow "SAME" padding, BatchNorm eps 1e-3).

They fill our ``efficientnet_b<phi>`` classifier whole; its ``backbone.*`` is what ``backbone_weights``
hands to a pose, segmentation or multi-task model of the same phi.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

from torch import nn

from mtl_ehrnet.convert.efficientnet_signature import EfficientNetSignature, phi_of
from mtl_ehrnet.convert.layouts import Identity, Layout, Plan, State, _channels, _count
from mtl_ehrnet.convert.targets import Target

_TORCHVISION_TOP = {"features.8.0.": "head.0.", "features.8.1.": "head.1.", "classifier.1.": "fc."}
_TIMM_TOP = {
    "conv_stem.": "backbone.features.0.0.",
    "bn1.": "backbone.features.0.1.",
    "conv_head.": "head.0.",
    "bn2.": "head.1.",
    "classifier.": "fc.",
}
_TIMM_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(.+)")
# timm's module names inside a block -> ours, for blocks with expansion (InvertedResidual) and without
# (DepthwiseSeparableConv).
_TIMM_EXPANDED = {
    "conv_pw": "0.0",
    "bn1": "0.1",
    "conv_dw": "1.0",
    "bn2": "1.1",
    "se": "2",
    "conv_pwl": "3.0",
    "bn3": "3.1",
}
_TIMM_DEPTHWISE = {"conv_dw": "0.0", "bn1": "0.1", "se": "1", "conv_pw": "2.0", "bn2": "2.1"}
_TIMM_SE = {"conv_reduce.": "fc1.", "conv_expand.": "fc2."}


def _classifier_identity(kind: str, signature: EfficientNetSignature, classes: int, changes: Dict) -> Identity:
    phi = phi_of(signature)
    changes = dict(changes, num_classes=classes)
    if phi is None:
        return Identity(
            f"a {kind} EfficientNet classifier matching no efficientnet_b<phi> ({signature.describe()}; ours scale "
            f"width by 1.1**phi and depth by 1.2**phi together)",
            None,
            changes,
        )
    return Identity(
        f"a {kind} EfficientNet classifier with the trunk of efficientnet_b{phi} ({classes} classes)",
        f"efficientnet_b{phi}",
        changes,
    )


class TorchvisionLayout(Layout):
    name = "torchvision"
    origin = "torchvision.models.efficientnet_b* state dicts"

    def matches(self, keys: List[str]) -> bool:
        return "features.0.0.weight" in keys and "classifier.1.weight" in keys

    def identify(self, state: State) -> Identity:
        keys = list(state)
        stages = range(1, _count(keys, r"features\.(\d+)\.") - 1)
        signature = EfficientNetSignature(
            _channels(state, "features.0.0.weight"),
            tuple(_channels(state, _last_projection(state, f"features.{s}.")) for s in stages),
            tuple(_count(keys, rf"features\.{s}\.(\d+)\.") for s in stages),
        )
        return _classifier_identity("torchvision", signature, _channels(state, "classifier.1.weight"), {})

    def plan(self, state: State, model: nn.Module) -> Plan:
        targets: Dict[str, Target] = {}
        for key in state:
            top = next((p for p in _TORCHVISION_TOP if key.startswith(p)), None)
            if top is not None:
                targets[key] = Target(_TORCHVISION_TOP[top] + key[len(top) :])
            elif key.startswith("features."):
                targets[key] = Target("backbone." + key)
        return targets, {}


def _last_projection(state: State, prefix: str) -> str:
    """The key of a stage's last 4-d conv weight (its output width)."""
    convs = [k for k, v in state.items() if k.startswith(prefix) and k.endswith(".weight") and v.dim() == 4]
    return convs[-1] if convs else ""


class TimmLayout(Layout):
    """timm's EfficientNet. Its keys do not tell ``tf_`` ports from PyTorch-trained weights: the file name
    does (``tf_efficientnet_b0_aa-827b6e33.pth``), or ``source="timm:tf_efficientnet_b0"``."""

    name = "timm"
    origin = "timm efficientnet_b* / tf_efficientnet_b* state dicts"

    def __init__(self, tf_ported: bool = False) -> None:
        self.tf_ported = tf_ported

    def matches(self, keys: List[str]) -> bool:
        return "conv_stem.weight" in keys and "blocks.0.0.conv_dw.weight" in keys

    def identify(self, state: State) -> Identity:
        keys = list(state)
        stages = range(_count(keys, r"blocks\.(\d+)\."))
        signature = EfficientNetSignature(
            _channels(state, "conv_stem.weight"),
            tuple(_channels(state, _last_projection(state, f"blocks.{s}.")) for s in stages),
            tuple(_count(keys, rf"blocks\.{s}\.(\d+)\.") for s in stages),
        )
        changes = {"tf_padding": True, "bn_eps": 1e-3} if self.tf_ported else {}
        kind = "timm tf_ (TensorFlow-ported)" if self.tf_ported else "timm"
        return _classifier_identity(kind, signature, _channels(state, "classifier.weight"), changes)

    def plan(self, state: State, model: nn.Module) -> Plan:
        expanded = {m.group(1, 2) for m in (re.match(r"blocks\.(\d+)\.(\d+)\.conv_pwl\.", k) for k in state) if m}
        targets: Dict[str, Target] = {}
        for key in state:
            ours = _timm_key(key, expanded)
            if ours is not None:
                targets[key] = Target(ours)
        return targets, {}


def _timm_key(key: str, expanded: set) -> Optional[str]:
    top = next((p for p in _TIMM_TOP if key.startswith(p)), None)
    if top is not None:
        return _TIMM_TOP[top] + key[len(top) :]
    match = _TIMM_BLOCK.fullmatch(key)
    if not match:
        return None
    stage, index, module, tail = match.groups()
    names = _TIMM_EXPANDED if (stage, index) in expanded else _TIMM_DEPTHWISE
    if module not in names:
        return None
    prefix = f"backbone.features.{int(stage) + 1}.{index}.block.{names[module]}"
    if module == "se":
        head = next((h for h in _TIMM_SE if tail.startswith(h)), None)
        return f"{prefix}.{_TIMM_SE[head]}{tail[len(head) :]}" if head else None
    return f"{prefix}.{tail}"
