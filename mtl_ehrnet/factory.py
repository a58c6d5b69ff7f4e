"""``create_model``: build a model by name and, from a local file, fill it with weights; ``load_model``: the
one call that turns a name or any file we read into a model.

Whole-model ``weights`` come from our checkpoints or any published layout that
:func:`~mtl_ehrnet.convert.convert_checkpoint` reads (EfficientHRNet, HigherHRNet, HRNet-seg, torchvision
and timm EfficientNet classifiers). ``backbone_weights`` fill only the backbone; an ImageNet EfficientNet
classifier file also gives the backbone the padding and BatchNorm epsilon its weights were trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from mtl_ehrnet.checkpoint import model_from_config
from mtl_ehrnet.convert import convert_checkpoint
from mtl_ehrnet.convert.converter import CLASSIFIER_LAYOUTS, LAYOUTS
from mtl_ehrnet.convert.source_file import load_file, read_source
from mtl_ehrnet.models.classifier import EfficientNetClassifier
from mtl_ehrnet.models.classifier_presets import classifier_phi
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


def load_model(
    path_or_name: PathLike, map_location: Union[str, torch.device] = "cpu", **overrides: Any
) -> nn.Module:
    """Any model the library builds or reads, in eval mode on ``map_location``.

    Args:
        path_or_name: a file (a checkpoint of ours of any kind: EfficientHRNet, classifier, or a kind another
            installed package registers under the ``mtl_ehrnet.model_kinds`` entry points, such as the smp
            teachers; or a published EfficientHRNet / HigherHRNet / HRNet-seg / EfficientNet file, converted),
            or a model name (built with fresh weights).
        map_location: the device the weights are read onto and the model is returned on.
        **overrides: options that leave the weights' shapes alone (``input_size``) for a file, or any
            :func:`~mtl_ehrnet.models.registry.model_config` override for a name.
    Raises:
        FileNotFoundError: ``path_or_name`` has a suffix or a folder (a file was meant) and no file is there.
        ValueError: ``path_or_name`` is not a known model name (the message says which names exist), or
            overrides that do not fit the file's weights.

    Example:
        >>> model = load_model("runs/distill/best.pt")             # whatever kind the run wrote
        >>> teacher = load_model("EfficientHRNet_H0.pth")          # published weights, converted
        >>> fresh = load_model("mtl_h0", num_classes=19)
    """
    path = Path(path_or_name)
    if path.is_file():
        model, _ = convert_checkpoint(path)
        if overrides:
            model = _with_overrides(model, overrides, path)
        return model.to(map_location).eval()
    if path.suffix or len(path.parts) > 1:  # model names have neither: this was meant as a file
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return build_model(str(path_or_name), **overrides).to(map_location).eval()


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


def _with_overrides(model: nn.Module, overrides: Dict[str, Any], where: PathLike) -> nn.Module:
    """The loaded model rebuilt with ``overrides``; refused where they change the weights' shapes."""
    if isinstance(overrides.get("input_size"), int):
        overrides = dict(overrides, input_size=(overrides["input_size"],) * 2)
    rebuilt = model_from_config({**model.config.to_dict(), **overrides}, where)
    try:
        rebuilt.load_state_dict(model.state_dict())
    except RuntimeError as err:
        raise ValueError(f"overrides {sorted(overrides)} do not fit the weights of {where}: {err}") from err
    return rebuilt.eval()
