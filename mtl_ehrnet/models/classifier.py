"""Compact EfficientNet classifiers B(phi) (thesis section 4.1) on the pose/segmentation backbone.

The trunk is the very :class:`~mtl_ehrnet.models.backbone.EfficientNetBackbone` the EfficientHRNet
models use, stored under ``backbone.``, so a trained classifier's ``backbone.features.*`` weights load
into ``pose_h<phi>``, ``seg_h<phi>`` and ``mtl_h<phi>`` without renaming. On top sits torchvision's
EfficientNet head: a 1x1 conv to ``4 x`` the last stage's channels, global average pooling, dropout and
a linear layer (with torchvision's head width the parameter counts reproduce Table 4.1, see docs/models.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from mtl_ehrnet.config_keys import reject_unknown_keys
from mtl_ehrnet.models.backbone import EfficientNetBackbone
from mtl_ehrnet.models.init import init_conv_bn

# The ``kind`` stored in a checkpoint's config: tells EfficientHRNet loaders this is not theirs.
KIND = "efficientnet_classifier"
# torchvision's EfficientNet head: a 1x1 conv to this multiple of the last stage's channels.
HEAD_EXPANSION = 4


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of a compact EfficientNet classifier.

    Attributes:
        name: registry name (``"efficientnet_b-2"``).
        phi: compound scaling coefficient (width ``1.1**phi``, depth ``1.2**phi``), the same phi as the
            ``pose_h<phi>`` / ``seg_h<phi>`` / ``mtl_h<phi>`` whose backbone it initialises.
        input_size: native (H, W) input (Table 4.1 sizes for phi = 0...-4).
        num_classes: classes of the linear layer (ImageNet 1000, CIFAR-100 100).
        lite: EfficientNet-lite trunk (no squeeze-excite, ReLU6), as ``lite=True`` on the pose models.
        dropout: dropout before the linear layer (torchvision's B0: 0.2).
        tf_padding: TensorFlow "SAME" padding in the strided convs (timm's ``tf_efficientnet_*``).
        bn_eps: BatchNorm epsilon of trunk and head (1e-3 for TensorFlow-trained weights).
    """

    name: str
    phi: int
    input_size: Tuple[int, int]
    num_classes: int = 1000
    lite: bool = False
    dropout: float = 0.2
    tf_padding: bool = False
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        if not self.bn_eps > 0:
            raise ValueError(f"bn_eps must be positive, got {self.bn_eps}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if min(self.input_size) < 32:
            raise ValueError(f"input_size must be at least 32x32, got {self.input_size}")

    def replace(self, **changes: Any) -> "ClassifierConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """Plain data (``weights_only``-safe), with ``kind`` so EfficientHRNet loaders refuse it clearly."""
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["kind"] = KIND
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ClassifierConfig":
        if data.get("kind") != KIND:
            raise ValueError(f"not a classifier config (kind {data.get('kind')!r}, expected {KIND!r})")
        values = {k: v for k, v in data.items() if k != "kind"}
        reject_unknown_keys(cls, values, "classifier config")
        values["input_size"] = tuple(values["input_size"])
        return cls(**values)

    def describe(self) -> str:
        return f"{self.name} classifier (phi={self.phi}, lite={self.lite}, {self.num_classes} classes)"


class EfficientNetClassifier(nn.Module):
    """EfficientNet-B(phi) image classifier whose trunk is the EfficientHRNet backbone.

    Args:
        config: architecture; build one with ``mtl_ehrnet.create_model("efficientnet_b<phi>")``.

    Shape: images (B, 3, H, W), any H, W >= 32 -> ``{"logits": (B, num_classes)}``.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = EfficientNetBackbone(
            config.phi, lite=config.lite, tf_padding=config.tf_padding, bn_eps=config.bn_eps
        )
        last = self.backbone.out_channels[-1]
        activation = nn.ReLU6 if config.lite else nn.SiLU
        norm = partial(nn.BatchNorm2d, eps=config.bn_eps)
        self.head = Conv2dNormActivation(last, HEAD_EXPANSION * last, 1, norm_layer=norm, activation_layer=activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout, inplace=True)
        self.fc = nn.Linear(HEAD_EXPANSION * last, config.num_classes)
        init_conv_bn(self.head)
        # Thesis 4.1 initialises with Xavier; for the linear layer that also keeps the first logits small
        # with few classes (torchvision's U(+-1/sqrt(C)) gives an initial loss of ~5 for 10 classes).
        # Convolutions keep the He init of the backbone they share with the pose models (torchvision's rule).
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    @property
    def input_size(self) -> Tuple[int, int]:
        """Native (H, W) input (thesis Table 4.1)."""
        return self.config.input_size

    @property
    def phi(self) -> int:
        return self.config.phi

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features before dropout and the linear layer.

        Shape: (B, 3, H, W) -> (B, 4 * last-stage channels), e.g. (B, 1280) for phi = 0.
        """
        last_tap = self.backbone(images)[-1]
        return torch.flatten(self.pool(self.head(last_tap)), 1)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"logits": self.fc(self.dropout(self.forward_features(images)))}


def from_config(config: Dict[str, Any]) -> EfficientNetClassifier:
    """The classifier a checkpoint config describes (fresh weights): the ``efficientnet_classifier`` kind of
    :func:`mtl_ehrnet.checkpoint.load_model`."""
    return EfficientNetClassifier(ClassifierConfig.from_dict(config))


def load_classifier(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> EfficientNetClassifier:
    """Builds the classifier stored in a ``train-backbone`` checkpoint and loads it; eval mode.

    Raises:
        ValueError: the file is not a classifier checkpoint (or would run code on load).
    """
    from mtl_ehrnet.checkpoint import read_checkpoint  # the checkpoint module imports the model package

    data = read_checkpoint(path, map_location)
    if data["config"].get("kind") != KIND:
        raise ValueError(f"{path} holds a {data['config'].get('kind', 'EfficientHRNet')!r} model, not a classifier")
    model = EfficientNetClassifier(ClassifierConfig.from_dict(data["config"]))
    model.load_state_dict(data["model"])
    return model.eval()
