"""``build_model(name, **overrides)`` and ``list_models()`` over the preset table.

``mtl_ehrnet.create_model`` builds on :func:`build_model` and also loads whole-model weights (ours or a
published checkpoint's, :mod:`mtl_ehrnet.convert`).

Names: ``pose_h{phi}``, ``seg_h{phi}``, ``mtl_h{phi}`` for any integer phi (``pose_h0``, ``mtl_h-4``,
``seg_h2``...), plus the classic baselines ``higherhrnet_w32`` and ``hrnet_w18_small_v2_seg``.
``create_model`` also builds the compact EfficientNet classifiers ``efficientnet_b<phi>`` (thesis 4.1),
listed by :func:`mtl_ehrnet.models.classifier_presets.list_classifiers`.
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, List, Optional, Union

from mtl_ehrnet.models.classifier import EfficientNetClassifier
from mtl_ehrnet.models.classifier_presets import classifier_config, classifier_phi
from mtl_ehrnet.models.config import ModelConfig
from mtl_ehrnet.models.efficienthrnet import EfficientHRNet
from mtl_ehrnet.models.presets import BASELINES, REGISTERED_PHIS, TASKS_BY_PREFIX, efficienthrnet
from mtl_ehrnet.models.weights import load_backbone_weights

_EFFICIENTHRNET_NAME = re.compile(r"^(pose|seg|mtl)_h(-?\d+)$")
OVERRIDABLE = (
    "num_keypoints", "num_classes", "lite", "share", "input_size", "deconv_blocks", "backbone", "tf_padding", "bn_eps",
)


def list_models(pattern: str = "*") -> List[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"mtl_*"``)."""
    names = [f"{prefix}_h{phi}" for prefix in TASKS_BY_PREFIX for phi in REGISTERED_PHIS]
    names += list(BASELINES)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of ``name`` with ``overrides`` applied.

    Overrides: ``num_keypoints``, ``num_classes``, ``lite`` (EfficientNet backbones only), ``share``
    (multi-task models only: ``"all"``, ``"s2"``, ``"s1"``, ``"backbone"``), ``input_size`` (int or
    (H, W)), ``deconv_blocks``, ``backbone`` (``{pose,seg,mtl}_h<phi>`` only: ``"timm:NAME"`` or
    ``"torchvision:NAME"`` puts that network's stride 4/8/16/32 maps under the phi body and heads),
    ``tf_padding`` and ``bn_eps`` (EfficientNet backbones: TensorFlow "SAME" padding and BatchNorm epsilon,
    as TensorFlow-trained weights need).
    """
    match = _EFFICIENTHRNET_NAME.match(name)
    if match:
        config = efficienthrnet(match.group(1), int(match.group(2)))
    elif name in BASELINES:
        config = BASELINES[name]()
    else:
        raise ValueError(
            f"unknown model {name!r}; expected pose_h<phi>, seg_h<phi>, mtl_h<phi> (integer phi) "
            f"or one of {sorted(BASELINES)}; classifiers: efficientnet_b<phi>"
        )
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {name}; allowed: {list(OVERRIDABLE)}")
    if "input_size" in overrides and isinstance(overrides["input_size"], int):
        overrides["input_size"] = (overrides["input_size"], overrides["input_size"])
    if overrides.get("share", "all") != "all" and len(config.tasks) < 2:
        raise ValueError(f"share={overrides['share']!r} only applies to multi-task (mtl_*) models, not {name}")
    backbone = overrides.get("backbone", config.backbone)
    if backbone != config.backbone and config.backbone != "efficientnet":
        raise ValueError(f"backbone={backbone!r} only applies to pose_h/seg_h/mtl_h<phi> models, not {name}")
    if overrides.get("lite") and backbone != "efficientnet":
        raise ValueError(f"lite=True needs an EfficientNet backbone; {name} would use {backbone}")
    return config.replace(**overrides) if overrides else config


def build_model(
    name: str, *, backbone_weights: Optional[Union[str, Path]] = None, **overrides: Any
) -> Union[EfficientHRNet, EfficientNetClassifier]:
    """Builds a registered model (architecture only; ``mtl_ehrnet.create_model`` also loads weights).

    Args:
        name: a name from :func:`list_models` or any ``{pose,seg,mtl}_h<phi>``; or a classifier
            ``efficientnet_b<phi>`` (overrides: ``num_classes``, ``lite``, ``input_size``, ``dropout``).
        backbone_weights: optional local file or state dict with backbone weights (e.g. a torchvision
            ``efficientnet_b0`` classification checkpoint of the same phi, or the timm / torchvision
            classifier named by a ``backbone="timm:NAME"`` override). Nothing is downloaded.
        **overrides: see :func:`model_config`.

    Example:
        >>> model = build_model("mtl_h-4", num_classes=19)
        >>> out = model(torch.randn(1, 3, *model.input_size))
    """
    if classifier_phi(name) is not None:
        model: Union[EfficientHRNet, EfficientNetClassifier] = EfficientNetClassifier(
            classifier_config(name, **overrides)
        )
    else:
        model = EfficientHRNet(model_config(name, **overrides))
    if backbone_weights is not None:
        load_backbone_weights(model.backbone, backbone_weights, target=name)
    return model
