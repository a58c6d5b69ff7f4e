"""Model checkpoints: atomic writes, safe reads, architecture stored beside the weights.

A checkpoint is a dict ``{"format", "config", "model", ...}`` where ``config`` is
``ModelConfig.to_dict()`` (plain data) and ``model`` the state dict; training adds its own keys
(optimizer, scheduler, epoch...). It is always read with ``torch.load(weights_only=True)``: a checkpoint
is untrusted input and nothing in it may run code.
"""
from __future__ import annotations

import os
import tempfile
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

from mtl_ehrnet.models.config import ModelConfig
from mtl_ehrnet.models.efficienthrnet import EfficientHRNet
from mtl_ehrnet.models.weights import LoadReport, match_keys

KINDS_GROUP = "mtl_ehrnet.model_kinds"

FORMAT = "mtl_ehrnet/1"
PathLike = Union[str, Path]


def save_checkpoint(path: PathLike, model: nn.Module, **extra: Any) -> Path:
    """Writes ``model`` (``model.config.to_dict()`` + weights) and ``extra`` entries atomically to ``path``.

    The file is written to a temporary name in the same folder and renamed, so a crash never leaves a
    half-written checkpoint under ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = _unwrap(model)
    payload: Dict[str, Any] = {"format": FORMAT, "config": inner.config.to_dict(), "model": inner.state_dict()}
    payload.update(extra)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Reads a checkpoint safely (``weights_only=True``) and checks its layout.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a readable mtl_ehrnet checkpoint (corrupt, or it holds objects that would run
            code on load).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"refusing to load {path}: not a plain tensor checkpoint ({err})") from err
    if not isinstance(data, dict) or "config" not in data or "model" not in data:
        raise ValueError(f"{path} is not an mtl_ehrnet checkpoint (expected keys 'config' and 'model')")
    return data


def model_from_config(config: Dict[str, Any], source: PathLike = "checkpoint") -> nn.Module:
    """The architecture a checkpoint's config describes, with fresh weights: an EfficientHRNet, or the model
    of the ``kind`` it names, built by whichever installed package registers that kind under the
    ``mtl_ehrnet.model_kinds`` entry points (so the core names no package above it).

    Raises:
        ValueError: naming ``source`` and the kinds known, when no package builds the kind.
    """
    kind = config.get("kind")
    if kind is None:
        return EfficientHRNet(ModelConfig.from_dict(config))
    builders = {entry.name: entry for entry in entry_points(group=KINDS_GROUP)}
    if kind not in builders:
        raise ValueError(f"{source} holds a {kind!r} model, which no installed package builds "
                         f"(entry points {KINDS_GROUP}: {sorted(builders)})")
    return builders[kind].load()(config)


def load_model(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """Builds the model stored in a checkpoint (any kind: :func:`model_from_config`) and loads its weights;
    returns it in eval mode on ``map_location``."""
    data = read_checkpoint(path, map_location)
    model = model_from_config(data["config"], path)
    model.load_state_dict(data["model"])
    return model.to(map_location).eval()


def load_weights(model: nn.Module, path: PathLike, data: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Loads a checkpoint's weights into an existing model of the same architecture.

    Works for any model with a ``config`` that has ``to_dict()`` (EfficientHRNet, wrapped teachers).

    Raises:
        ValueError: the checkpoint holds another architecture; the message names both configs.
    """
    data = read_checkpoint(path) if data is None else data
    inner = _unwrap(model)
    own = inner.config.to_dict()  # type: ignore[union-attr]
    if _normalised(data["config"]) != own:
        raise ValueError(
            f"checkpoint {path} holds another architecture:\n  checkpoint: {_describe(data['config'])}\n"
            f"  model:      {_describe(own)}"
        )
    inner.load_state_dict(data["model"])
    return data


def load_matching_weights(model: nn.Module, path: PathLike) -> LoadReport:
    """Initialises ``model`` from every weight of a checkpoint that it has under the same name.

    A single-task model's weights are a subset of the multi-task model of the same width (``pose_h-4``'s
    backbone, body and pose head are ``mtl_h-4``'s), so a trained pose or segmentation model can start a
    multi-task one; the other head keeps its initialisation.

    Returns:
        which of the model's keys were loaded, which were not in the file (``missing``) and which keys
        of the file the model does not have (``unexpected``).

    Raises:
        ValueError: a shared key has another shape (another width or phi; the message names both
            architectures), or no key of the file is one of the model's.
    """
    data = read_checkpoint(path)
    inner = _unwrap(model)
    own = inner.state_dict()
    state = data["model"]
    mismatched, report = match_keys(own, state)
    if mismatched:
        own_config = inner.config.to_dict() if hasattr(inner, "config") else {}
        raise ValueError(
            f"cannot initialise from {path}: {len(mismatched)} weights differ in shape (e.g. {mismatched[0]}); "
            f"the weights must come from a model of the same width:\n  checkpoint: {_describe(data['config'])}\n"
            f"  model:      {_describe(own_config)}"
        )
    if not report.loaded:
        raise ValueError(f"cannot initialise from {path}: none of its weights is one of this model's "
                         f"(file keys like {list(state)[:3]}, model keys like {list(own)[:3]})")
    inner.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    return report


# Config fields that say how weights compute rather than what shape they have: a model started from a
# checkpoint's weights needs the checkpoint's values (a converted EfficientHRNet file pads TensorFlow-style).
WEIGHT_OPTIONS = ("tf_padding", "bn_eps")


def weight_options(path: PathLike) -> Dict[str, Any]:
    """The :data:`WEIGHT_OPTIONS` a checkpoint's weights were trained with, where they differ from the defaults.

    ``create_model(name, **weight_options(path))`` builds a model that ``load_matching_weights(model, path)``
    starts in the same numerical setting, e.g. a multi-task student from a converted EfficientHRNet pose file.
    """
    config = read_checkpoint(path)["config"]
    if "kind" in config:
        return {}
    stored = ModelConfig.from_dict(config)
    defaults = ModelConfig(name=stored.name, tasks=stored.tasks, body=stored.body, input_size=stored.input_size)
    return {k: getattr(stored, k) for k in WEIGHT_OPTIONS if getattr(stored, k) != getattr(defaults, k)}


def _normalised(config: Dict[str, Any]) -> Dict[str, Any]:
    """A stored config with the fields added since it was written at their defaults."""
    if "kind" in config:
        return config
    try:
        return ModelConfig.from_dict(config).to_dict()
    except (ValueError, TypeError, KeyError):
        return config


def _describe(config: Dict[str, Any]) -> str:
    try:
        return ModelConfig.from_dict(config).describe()
    except (ValueError, TypeError, KeyError):
        return ", ".join(f"{k}={v}" for k, v in config.items())


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel / compiled wrapper."""
    for attribute in ("module", "_orig_mod"):
        inner = getattr(model, attribute, None)
        if isinstance(inner, nn.Module):
            return inner
    return model
