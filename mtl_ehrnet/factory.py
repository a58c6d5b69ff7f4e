"""``create_model``: build a model by name and, from a local file, fill it with weights.

Whole-model ``weights`` come from our checkpoints or any published layout that
:func:`~mtl_ehrnet.convert.convert_checkpoint` reads (EfficientHRNet, HigherHRNet, HRNet-seg, torchvision
and timm EfficientNet classifiers). ``backbone_weights`` fill only the backbone; an ImageNet EfficientNet
classifier file also gives the backbone the padding and BatchNorm epsilon its weights were trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from mtl_ehrnet.convert import convert_checkpoint
from mtl_ehrnet.convert.converter import CLASSIFIER_LAYOUTS, LAYOUTS
from mtl_ehrnet.convert.source_file import load_file, read_source
from mtl_ehrnet.models.classifier import EfficientNetClassifier
from mtl_ehrnet.models.classifier_presets import classifier_phi
from mtl_ehrnet.models.config import ModelConfig
from mtl_ehrnet.models.efficienthrnet import EfficientHRNet
from mtl_ehrnet.models.registry import build_model, model_config
from mtl_ehrnet.models.weights import load_backbone_weights

PathLike = Union[str, Path]
Model = Union[EfficientHRNet, EfficientNetClassifier]


def create_model(
    name: str,
    *,
    weights: Optional[PathLike] = None,
    backbone_weights: Optional[PathLike] = None,
    **overrides: Any,
) -> Model:
    """Builds a registered model, optionally with weights from a local file (nothing is downloaded).

    Args:
        name: a name from :func:`~mtl_ehrnet.list_models`, any ``{pose,seg,mtl}_h<phi>``, or a classifier
            ``efficientnet_b<phi>``.
        weights: a checkpoint of ours or a published one (``source`` detected from its keys); the model is
            returned in eval mode with the options the weights need (e.g. ``tf_padding`` for EfficientHRNet's
            own files). Overrides that leave the weights' shapes alone (``input_size``) still apply.
        backbone_weights: a file with backbone weights: an ImageNet EfficientNet classifier (torchvision,
            timm, ``tf_efficientnet_*``, or our ``train-backbone`` checkpoint) of the same phi, a bare backbone
            state dict, or the classifier named by a ``backbone="timm:NAME"`` override.
        **overrides: see :func:`~mtl_ehrnet.models.registry.model_config`.
    Raises:
        ValueError: both ``weights`` and ``backbone_weights``; or a file of another architecture (the message
            names both).

    Example:
        >>> model = create_model("mtl_h-4", num_classes=19)
        >>> pose = create_model("pose_h-4", weights="EfficientHRNet_H-4.pth")   # the published file
        >>> seg = create_model("hrnet_w18_small_v2_seg", weights="hrnet_w18_small_v2_cityscapes.pth")
        >>> pose = create_model("pose_h0", backbone_weights="tf_efficientnet_b0_aa-827b6e33.pth")
    """
    if weights is not None and backbone_weights is not None:
        raise ValueError("pass weights (the whole model) or backbone_weights (its backbone), not both")
    if weights is not None:
        model, _ = convert_checkpoint(weights, name)
        return _with_overrides(model, overrides, weights) if overrides else model
    if backbone_weights is None:
        return build_model(name, **overrides)
    state, options = _published_backbone(backbone_weights, name, overrides)
    model = build_model(name, **{**options, **overrides})
    load_backbone_weights(model.backbone, state if state is not None else backbone_weights, target=name)
    return model


def _published_backbone(
    path: PathLike, name: str, overrides: Dict[str, Any]
) -> Tuple[Optional[Mapping[str, torch.Tensor]], Dict[str, Any]]:
    """An ImageNet EfficientNet classifier file, converted: its backbone tensors and the options they need.

    Other files (ours, bare backbones, foreign-backbone classifiers) go to ``load_backbone_weights`` as they are.
    """
    if classifier_phi(name) is not None or overrides.get("backbone", model_config(name).backbone) != "efficientnet":
        return None, {}
    data = load_file(path)
    if isinstance(data, Mapping) and "config" in data:
        return None, {}
    keys = list(read_source(data, str(path)).tensors)
    if not any(LAYOUTS[layout].matches(keys) for layout in CLASSIFIER_LAYOUTS):
        return None, {}
    classifier, _ = convert_checkpoint(path)
    config = classifier.config
    state = {k[len("backbone.") :]: v for k, v in classifier.state_dict().items() if k.startswith("backbone.")}
    return state, {"tf_padding": config.tf_padding, "bn_eps": config.bn_eps} if config.tf_padding else {}


def _with_overrides(model: Model, overrides: Dict[str, Any], where: PathLike) -> Model:
    """The converted model rebuilt with ``overrides``; refused where they change the weights' shapes."""
    if isinstance(model, EfficientNetClassifier):
        rebuilt: Model = EfficientNetClassifier(model.config.replace(**overrides))
    else:
        if isinstance(overrides.get("input_size"), int):
            overrides = dict(overrides, input_size=(overrides["input_size"],) * 2)
        rebuilt = EfficientHRNet(ModelConfig.from_dict({**model.config.to_dict(), **overrides}))
    try:
        rebuilt.load_state_dict(model.state_dict())
    except RuntimeError as err:
        raise ValueError(f"overrides {sorted(overrides)} do not fit the weights of {where}: {err}") from err
    return rebuilt.eval()
