"""``convert_checkpoint``: a published checkpoint -> our model with every tensor filled, and a report.

Nothing is half-loaded: every source tensor must map onto one of ours or be explained (a training
wrapper's loss buffer, the unused stride-2 tag half), every tensor of ours must be filled (a missing
BatchNorm step counter excepted), shapes must agree; otherwise a ValueError names the file, what it
holds, the model asked for and the first mismatching tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from mtl_ehrnet.checkpoint import model_from_config
from mtl_ehrnet.convert.classifier_layouts import TimmLayout, TorchvisionLayout
from mtl_ehrnet.convert.layouts import EfficientHRNetLayout, HigherHRNetLayout, HRNetSegLayout, Identity, Layout
from mtl_ehrnet.convert.report import ConversionReport
from mtl_ehrnet.convert.source_file import SourceState, load_file, read_source
from mtl_ehrnet.convert.targets import FOLD_BIAS, HEATMAP_HALF, Target
from mtl_ehrnet.models.classifier import ClassifierConfig, EfficientNetClassifier
from mtl_ehrnet.models.classifier_presets import classifier_config, classifier_phi
from mtl_ehrnet.models.config import ModelConfig
from mtl_ehrnet.models.efficienthrnet import EfficientHRNet
from mtl_ehrnet.models.registry import model_config

PathLike = Union[str, Path]
Model = Union[EfficientHRNet, EfficientNetClassifier]
OURS = "mtl_ehrnet"
LAYOUTS: Dict[str, Layout] = {
    layout.name: layout
    for layout in (EfficientHRNetLayout(), HigherHRNetLayout(), HRNetSegLayout(), TorchvisionLayout(), TimmLayout())
}
CLASSIFIER_LAYOUTS = ("torchvision", "timm")
SHOWN_MISMATCHES = 5


def known_sources() -> List[str]:
    """The ``source=`` values: our own checkpoints and every published layout."""
    return [OURS, *LAYOUTS, "timm:<model name>"]


def convert_checkpoint(
    path: PathLike, model_name: Optional[str] = None, source: Optional[str] = None
) -> Tuple[Model, ConversionReport]:
    """Loads a checkpoint of ours or of a reference implementation into our model.

    Args:
        path: a ``torch.save`` file, read with ``weights_only=True``: a plain state dict, one under
            ``"state_dict"`` / ``"model"``, with ``module.`` / ``model.`` prefixes, or our checkpoint.
        model_name: our model to fill (``"pose_h-4"``, ``"higherhrnet_w32"``, ``"hrnet_w18_small_v2_seg"``,
            ``"efficientnet_b0"``...); default the one the file's architecture is.
        source: the layout, one of :func:`known_sources` (``"timm:tf_efficientnet_b0"`` names a timm
            model, telling TensorFlow-ported weights from PyTorch-trained ones); default detected from the keys.
    Returns:
        the model in eval mode, configured with the options the weights need (e.g. ``tf_padding``), and
        the report of what was mapped, folded and ignored.
    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a pickle that would run code, an unknown layout (the message lists the known ones), or
            a file of another architecture than ``model_name`` (the message names both).
    """
    where = str(path)
    data = load_file(path)
    if isinstance(data, Mapping) and isinstance(data.get("config"), Mapping) and "model" in data:
        if source not in (None, OURS):
            raise ValueError(f"{where} is an mtl_ehrnet checkpoint, not a {source!r} file")
        return _load_ours(data, where, model_name)
    state = read_source(data, where)
    layout = _choose_layout(state, source, Path(path).name, where)
    identity = layout.identify(state.tensors)
    name = model_name or identity.model
    if name is None:
        raise ValueError(
            f"{where} holds {identity.description}; no model of ours has that architecture, pass model_name"
        )
    model = _build(name, identity.changes, layout, where, identity)
    report = ConversionReport(
        where, layout.name, identity.description, _config_of(model).describe(), notes=list(state.notes)
    )
    report.ignored.update(state.wrapper_keys)
    if identity.changes:
        report.notes.append(f"model options the weights need: {identity.changes}")
    model.load_state_dict(_convert(state, layout, model, identity, name, report))
    return model.eval(), report


def _choose_layout(state: SourceState, source: Optional[str], file_name: str, where: str) -> Layout:
    keys = list(state.tensors)
    found = [layout for layout in LAYOUTS.values() if layout.matches(keys)]
    if source is None:
        if not found:
            raise ValueError(
                f"{where}: unknown checkpoint layout (keys like {keys[:4]}); known layouts: "
                + "; ".join(f"{name} ({layout.origin})" for name, layout in LAYOUTS.items())
                + f"; and {OURS} checkpoints"
            )
        layout = found[0]
    else:
        kind, _, timm_name = source.partition(":")
        if kind not in LAYOUTS or (timm_name and kind != "timm"):
            raise ValueError(f"unknown source {source!r}; known: {known_sources()}")
        layout = LAYOUTS[kind]
        if layout not in found:
            looks = f"it looks like a {found[0].name!r} file" if found else "its layout is none of the known ones"
            raise ValueError(f"{where} is not a {kind!r} file ({layout.origin}): {looks} (keys like {keys[:4]})")
        file_name = timm_name or file_name
    if isinstance(layout, TimmLayout):
        layout = TimmLayout(tf_ported=file_name.startswith("tf_"))
        if layout.tf_ported:
            state.notes.append(
                f"TensorFlow-ported timm weights ({file_name!r} starts with 'tf_'): TF padding, BN eps 1e-3"
            )
    return layout


def _build(name: str, changes: Dict[str, Any], layout: Layout, where: str, identity: Identity) -> Model:
    is_classifier = classifier_phi(name) is not None
    if layout.name in CLASSIFIER_LAYOUTS and not is_classifier:
        raise ValueError(
            f"{where} holds {identity.description}: a classifier fills only a backbone. Convert it to "
            f"{identity.model or 'efficientnet_b<phi>'} and pass it as create_model({name!r}, backbone_weights=...)"
        )
    if is_classifier:
        fields = {k: v for k, v in changes.items() if k in ClassifierConfig.__dataclass_fields__}
        return EfficientNetClassifier(classifier_config(name, **fields))
    fields = {k: v for k, v in changes.items() if k in ModelConfig.__dataclass_fields__}
    return EfficientHRNet(model_config(name).replace(**fields))


def _convert(
    state: SourceState, layout: Layout, model: nn.Module, identity: Identity, name: str, report: ConversionReport
) -> Dict[str, torch.Tensor]:
    targets, notes = layout.plan(state.tensors, model)
    own = model.state_dict()
    problems = [f"{k} {tuple(v.shape)} -> nothing of ours" for k, v in state.tensors.items() if k not in targets]
    converted: Dict[str, torch.Tensor] = {}
    folds: Dict[str, torch.Tensor] = {}
    for key, target in targets.items():
        tensor = state.tensors[key]
        problem = _check(key, tensor, target, own)
        if problem:
            problems.append(problem)
        elif target.op == FOLD_BIAS:
            folds[target.key] = tensor
            report.folded[key] = target.key
        else:
            converted[target.key] = tensor[: own[target.key].shape[0]] if target.op == HEATMAP_HALF else tensor
            report.mapped[key] = target.key
    report.ignored.update(notes)
    unfilled = [k for k in own if k not in converted and not k.endswith("num_batches_tracked")]
    problems += [f"nothing -> {k} {tuple(own[k].shape)}" for k in unfilled]
    if problems:
        raise ValueError(
            f"{report.source} does not fit {name}: the file is {identity.description}; you asked for {_short(model)}. "
            f"{len(problems)} tensors do not match, first: " + "; ".join(problems[:SHOWN_MISMATCHES])
        )
    for bn, bias in folds.items():
        converted[f"{bn}.running_mean"] = converted[f"{bn}.running_mean"] - bias
    for key in own:
        if key not in converted:  # only BatchNorm step counters reach here
            converted[key] = torch.zeros_like(own[key])
            report.defaulted.append(key)
    return {k: v.to(own[k].dtype) for k, v in converted.items()}


def _check(key: str, tensor: torch.Tensor, target: Target, own: Mapping[str, torch.Tensor]) -> str:
    ours = f"{target.key}.running_mean" if target.op == FOLD_BIAS else target.key
    if ours not in own:
        return f"{key} {tuple(tensor.shape)} -> {ours} (no such tensor)"
    expected = tuple(own[ours].shape)
    shape = tuple(tensor.shape)
    if target.op == HEATMAP_HALF:
        shape = (shape[0] // 2, *shape[1:])
    return "" if shape == expected else f"{key} {tuple(tensor.shape)} -> {ours} {expected}"


def _config_of(model: nn.Module) -> Any:
    return model.config  # type: ignore[return-value]


def _short(model: nn.Module) -> str:
    config = _config_of(model)
    backbone = getattr(config, "backbone", "efficientnet")
    if backbone == "efficientnet":
        return f"{config.name} (phi={config.phi})"
    return config.describe()


def _load_ours(data: Mapping[str, Any], where: str, model_name: Optional[str]) -> Tuple[Model, ConversionReport]:
    model = model_from_config(dict(data["config"]), where)
    config = _config_of(model)
    if model_name is not None and model_name != config.name:
        raise ValueError(f"{where} holds {config.describe()}; you asked for {model_name}")
    model.load_state_dict(data["model"])
    report = ConversionReport(where, OURS, f"an mtl_ehrnet checkpoint of {config.name}", config.describe())
    report.mapped.update({k: k for k in data["model"]})
    return model.eval(), report
