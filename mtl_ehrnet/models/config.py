"""Typed architecture description of every model the library builds.

A :class:`ModelConfig` is plain data: it round-trips through ``to_dict`` / ``from_dict`` with only
strings, numbers, booleans and lists, so checkpoints can store it and be read with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Tuple

from mtl_ehrnet.config_keys import reject_unknown_keys
from mtl_ehrnet.models.hrnet import BodyConfig

TASKS = ("pose", "seg")
# Where a multi-task trunk splits: the number of HRNet stages shared by both tasks.
SHARE_POINTS: Dict[str, int] = {"backbone": 0, "s1": 1, "s2": 2, "all": 3}
OWN_BACKBONES = ("efficientnet", "hrnet_stem")
# Foreign backbones are named "<library>:<model name>", e.g. "timm:mobilenetv3_large_100".
FOREIGN_BACKBONES = ("timm", "torchvision")


def is_foreign_backbone(backbone: str) -> bool:
    """Whether ``backbone`` names a timm or torchvision network (``"timm:NAME"``, ``"torchvision:NAME"``)."""
    library, sep, name = backbone.partition(":")
    return bool(sep) and library in FOREIGN_BACKBONES and bool(name)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a model.

    Attributes:
        name: registry name the config came from (e.g. ``"mtl_h-4"``).
        tasks: heads to attach, a subset of ``("pose", "seg")`` in that order.
        body: HRNet body architecture.
        input_size: native (H, W) input.
        backbone: ``"efficientnet"``, ``"hrnet_stem"``, ``"timm:NAME"`` or ``"torchvision:NAME"``.
        phi: scaling coefficient: EfficientNet width/depth (``"efficientnet"`` backbone), HRNet widths and
            modules, input size.
        lite: EfficientNet-lite backbone (no SE, ReLU6).
        stage1_blocks: BOTTLENECK blocks of the HRNet stem's stage 1 (``"hrnet_stem"`` backbone).
        stage1_channels: bottleneck width of that stage 1 (its output is 4x this; HRNet-W18-small-v1: 32).
        tf_padding: TensorFlow "SAME" padding in the EfficientNet's strided convs (EfficientHRNet's
            reference code pads that way; its published weights need it).
        bn_eps: BatchNorm epsilon of the EfficientNet backbone (1e-3 for TensorFlow-trained weights).
        num_keypoints: K pose heatmaps/tags.
        num_classes: C segmentation classes.
        deconv_blocks: BASIC blocks in the pose head's deconv block.
        share: trunk split point for multi-task models, one of ``SHARE_POINTS``.
    """

    name: str
    tasks: Tuple[str, ...]
    body: BodyConfig
    input_size: Tuple[int, int]
    backbone: str = "efficientnet"
    phi: int = 0
    lite: bool = False
    stage1_blocks: int = 4
    stage1_channels: int = 64
    tf_padding: bool = False
    bn_eps: float = 1e-5
    num_keypoints: int = 17
    num_classes: int = 19
    deconv_blocks: int = 2
    share: str = "all"

    def __post_init__(self) -> None:
        if not self.tasks or any(t not in TASKS for t in self.tasks) or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if self.share not in SHARE_POINTS:
            raise ValueError(f"share must be one of {sorted(SHARE_POINTS)}, got {self.share!r}")
        if self.backbone not in OWN_BACKBONES and not is_foreign_backbone(self.backbone):
            raise ValueError(
                f"backbone must be one of {OWN_BACKBONES}, 'timm:NAME' or 'torchvision:NAME', got {self.backbone!r}"
            )
        if self.lite and self.backbone != "efficientnet":
            raise ValueError(f"lite=True needs the EfficientNet backbone, not {self.backbone!r}")
        if (self.tf_padding or self.bn_eps != 1e-5) and self.backbone != "efficientnet":
            raise ValueError(f"tf_padding and bn_eps apply to the EfficientNet backbone, not {self.backbone!r}")
        if not self.bn_eps > 0:
            raise ValueError(f"bn_eps must be positive, got {self.bn_eps}")
        if self.backbone == "hrnet_stem" and self.body.new_branch != "strided":
            raise ValueError("the HRNet stem gives one stride-4 map: its body needs new_branch='strided'")
        h, w = self.input_size
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise ValueError(f"input_size must be positive multiples of 32, got {self.input_size}")

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """Plain-data form (JSON- and ``weights_only``-safe)."""
        data = asdict(self)
        data["tasks"] = list(self.tasks)
        data["input_size"] = list(self.input_size)
        data["body"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data["body"].items()}
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise a ValueError naming them."""
        reject_unknown_keys(cls, data, "model config")
        body = dict(data["body"])
        body["widths"] = tuple(body["widths"])
        body["modules"] = tuple(body["modules"])
        values = dict(data)
        values["body"] = BodyConfig(**body)
        values["tasks"] = tuple(data["tasks"])
        values["input_size"] = tuple(data["input_size"])
        return cls(**values)

    def describe(self) -> str:
        """One line naming the architecture, for error messages."""
        parts = [self.name, "+".join(self.tasks), f"{self.backbone}(phi={self.phi}, lite={self.lite})"]
        if self.tf_padding:
            parts.append("tf_padding")
        parts.append(f"widths={list(self.body.widths)} modules={list(self.body.modules)}")
        parts.append(f"K={self.num_keypoints} C={self.num_classes} share={self.share}")
        return " ".join(parts)
