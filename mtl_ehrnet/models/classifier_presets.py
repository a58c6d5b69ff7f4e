"""Classifier names ``efficientnet_b<phi>`` and the thesis's Table 4.1 figures.

Any integer phi builds (``efficientnet_b-7``, ``efficientnet_b2``); the thesis's five compact models and
two scaled-up ones are listed by :func:`list_classifiers`.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, Dict, List, NamedTuple, Optional

from mtl_ehrnet.models.classifier import ClassifierConfig
from mtl_ehrnet.models.scaling import classifier_input_size

CLASSIFIER_NAME = re.compile(r"^efficientnet_b(-?\d+)$")
REGISTERED_CLASSIFIER_PHIS = (0, -1, -2, -3, -4, 1, 2)
CLASSIFIER_OVERRIDES = ("num_classes", "lite", "input_size", "dropout", "tf_padding", "bn_eps")


class ThesisClassifierRow(NamedTuple):
    """One row of thesis Table 4.1: "# Params" and "FLOPS" (multiply-adds) on ImageNet and CIFAR-100,
    and top-1 accuracy (%)."""

    input_size: int
    imagenet_params: float
    imagenet_flops: float
    imagenet_top1: float
    cifar_params: float
    cifar_flops: float
    cifar_top1: float


THESIS_TABLE_4_1: Dict[int, ThesisClassifierRow] = {
    0: ThesisClassifierRow(224, 5.3e6, 0.4e9, 75.0, 4.1e6, 0.4e9, 81.9),
    -1: ThesisClassifierRow(195, 4.5e6, 0.3e9, 73.8, 3.5e6, 0.3e9, 81.4),
    -2: ThesisClassifierRow(170, 3.4e6, 0.2e9, 71.3, 2.5e6, 0.2e9, 79.8),
    -3: ThesisClassifierRow(145, 2.8e6, 0.1e9, 68.5, 1.9e6, 0.1e9, 78.2),
    # The ImageNet 1.3 M repeats the CIFAR-100 figure: 1000 classes give 2.05 M (docs/models.md, Table 4.1).
    -4: ThesisClassifierRow(128, 1.3e6, 0.05e9, 65.6, 1.3e6, 0.05e9, 74.3),
}


def classifier_phi(name: str) -> Optional[int]:
    """phi of a classifier name (``"efficientnet_b-2"`` -> -2), or None for any other name."""
    match = CLASSIFIER_NAME.match(name)
    return int(match.group(1)) if match else None


def list_classifiers(pattern: str = "*") -> List[str]:
    """Registered classifier names matching a shell-style ``pattern`` (e.g. ``"efficientnet_b-*"``)."""
    names = [f"efficientnet_b{phi}" for phi in REGISTERED_CLASSIFIER_PHIS]
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def classifier_config(name: str, **overrides: Any) -> ClassifierConfig:
    """The :class:`ClassifierConfig` of ``efficientnet_b<phi>`` with ``overrides`` applied.

    Overrides: ``num_classes`` (default 1000), ``lite``, ``input_size`` (int or (H, W); default the
    Table 4.1 size), ``dropout``, ``tf_padding`` and ``bn_eps`` (TensorFlow-trained weights: True, 1e-3).
    """
    phi = classifier_phi(name)
    if phi is None:
        raise ValueError(
            f"unknown classifier {name!r}; expected efficientnet_b<phi> for an integer phi, e.g. efficientnet_b-2"
        )
    unknown = sorted(set(overrides) - set(CLASSIFIER_OVERRIDES))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {name}; allowed: {list(CLASSIFIER_OVERRIDES)}")
    size = overrides.pop("input_size", None) or classifier_input_size(phi)
    if isinstance(size, int):
        size = (size, size)
    return ClassifierConfig(name=name, phi=phi, input_size=tuple(size), **overrides)
