"""Loading backbone weights from a local file, with a clear report of what matched."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Tuple, Union

import torch
from torch import nn

from mtl_ehrnet.models.backbone import EfficientNetBackbone

logger = logging.getLogger(__name__)

# Prefixes stripped from checkpoint keys: DDP's "module.", a whole model's "backbone.".
_PREFIXES = ("module.", "backbone.")
# Wrappers a state dict is commonly stored under.
_WRAPPERS = ("model", "state_dict", "model_state_dict")


class LoadReport(NamedTuple):
    """Keys of the backbone the file did not provide, and keys of the file the backbone does not have."""

    loaded: List[str]
    missing: List[str]
    unexpected: List[str]


def match_keys(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> Tuple[List[str], LoadReport]:
    """Compares a model's state dict ``own`` with weights ``state`` by key.

    Returns:
        the shared keys whose shapes differ (``"key: file (..) vs model (..)"``), and which keys of
        ``own`` ``state`` fills (``loaded``), lacks (``missing``) and has beyond them (``unexpected``).
    """
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    report = LoadReport(
        [k for k in own if k in state], [k for k in own if k not in state], [k for k in state if k not in own]
    )
    return mismatched, report


def _load_file(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or unsafe pickle
        raise ValueError(f"cannot read weights from {path}: {err}") from err


def read_state_dict(source: Union[str, Path, Mapping[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Reads a state dict from a file (``torch.load(weights_only=True)``) or passes a mapping through.

    A state dict wrapped under ``"model"``, ``"state_dict"`` or ``"model_state_dict"`` is unwrapped.
    """
    data: object = dict(source) if isinstance(source, Mapping) else _load_file(Path(source))
    return _unwrap_state_dict(data, source)


def _unwrap_state_dict(data: object, source: object) -> Dict[str, torch.Tensor]:
    for key in _WRAPPERS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{source}: expected a state dict of tensors, got {type(data).__name__}")
    return data


def _check_stored_phi(backbone: nn.Module, data: object, source: object, target: str) -> None:
    """Refuses an mtl_ehrnet checkpoint (classifier or EfficientHRNet) whose stored EfficientNet phi or
    ``lite`` differs from ``backbone``'s, naming both, before any shape is compared."""
    if (
        not isinstance(backbone, EfficientNetBackbone)
        or not isinstance(data, dict)
        or not isinstance(data.get("config"), dict)
    ):
        return
    config = data["config"]
    if "phi" not in config or config.get("backbone", "efficientnet") != "efficientnet":
        return
    stored = (int(config["phi"]), bool(config.get("lite", False)))
    if stored != (backbone.phi, backbone.lite):
        raise ValueError(
            f"backbone weights {source} come from {config.get('name', 'a model')} (EfficientNet phi={stored[0]}, "
            f"lite={stored[1]}), but {target} has an EfficientNet backbone with phi={backbone.phi}, "
            f"lite={backbone.lite}; "
            f"use weights of the same phi (efficientnet_b{backbone.phi}, pose_h{backbone.phi}, ...)"
        )


def load_backbone_weights(
    backbone: nn.Module,
    source: Union[str, Path, Mapping[str, torch.Tensor]],
    strict: bool = False,
    target: str = "this model",
) -> LoadReport:
    """Loads matching keys of ``source`` into ``backbone`` and reports the rest.

    Keys are matched after stripping ``module.`` and ``backbone.`` prefixes, so a torchvision
    ``efficientnet_b*`` classification state dict, one of our checkpoints or a bare backbone state dict
    all work; the classifier and the 1280-channel head come back as ``unexpected``. A backbone with an
    ``adapt_state_dict(state)`` method (timm / torchvision wrappers) renames the stripped keys first, so
    a timm or torchvision classifier state dict loads into its features-only network. A
    ``train-backbone`` classifier checkpoint (``efficientnet_b<phi>``) loads the same way: its
    ``backbone.features.*`` are the EfficientHRNet backbone's keys, its head and ``fc`` are ``unexpected``.

    Args:
        backbone: the module to fill (``model.backbone``).
        source: a file or a state dict.
        strict: refuse missing or unexpected keys.
        target: the receiving model's name, for error messages.

    Raises:
        ValueError: when an mtl_ehrnet checkpoint stores another EfficientNet phi (or ``lite``) than the
            backbone's (the message names both), when a key matches with another shape (a backbone of
            another phi, say), when no key matches at all, or when ``strict`` and any key is missing or
            unexpected.
    """
    if isinstance(source, Mapping):
        raw: object = dict(source)
    else:
        raw = _load_file(Path(source))
        _check_stored_phi(backbone, raw, source, target)
    state = {}
    for key, value in _unwrap_state_dict(raw, source).items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    adapt = getattr(backbone, "adapt_state_dict", None)
    if adapt is not None:  # foreign backbones rename a classifier's keys to their wrapped network's
        state = adapt(state)
    own = backbone.state_dict()
    mismatched, report = match_keys(own, state)
    if mismatched:
        raise ValueError(
            f"backbone weights {source if not isinstance(source, Mapping) else '(state dict)'} do not fit this "
            f"backbone ({len(mismatched)} shape mismatches, e.g. {mismatched[:3]}); is it another phi or variant?"
        )
    loaded, missing, unexpected = report
    if not loaded:
        raise ValueError(
            f"no key of the weights matches the backbone (file keys like {list(state)[:3]}, expected keys like "
            f"{list(own)[:3]})"
        )
    if strict and (missing or unexpected):
        raise ValueError(
            f"strict load: {len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}"
        )
    backbone.load_state_dict({k: state[k] for k in loaded}, strict=False)
    logger.info("backbone weights: %d loaded, %d missing, %d unexpected", len(loaded), len(missing), len(unexpected))
    if missing:
        logger.warning("backbone keys not in the weights (left at init): %s", missing[:10])
    return LoadReport(loaded, missing, unexpected)
