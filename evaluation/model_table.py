"""Params and MACs of the registered models at their native input, and the joint-vs-separate saving."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence

import torch

from evaluation.complexity import complexity
from mtl_ehrnet import create_model, list_classifiers, list_models
from mtl_ehrnet.models.classifier_presets import THESIS_TABLE_4_1, classifier_phi
from mtl_ehrnet.models.presets import THESIS_BASELINE_FIGURES, THESIS_POSE_FIGURES
from mtl_ehrnet.models.scaling import classifier_resolution

_PRESET = re.compile(r"^(pose|seg|mtl)_h(-?\d+)$")


def model_rows(names: Optional[Sequence[str]] = None, backbone: Optional[str] = None) -> List[Dict[str, object]]:
    """One row per model: name, backbone, tasks, input size, params, MACs and, where the thesis printed
    them, its figures (thesis convention: its summary tool's counts, see ``mtl_ehrnet.models.presets``).

    Args:
        names: registered model names (default: all).
        backbone: a ``"timm:NAME"`` / ``"torchvision:NAME"`` backbone override for every model (the
            thesis figures are then left out: they describe the EfficientNet models).

    Models are built on the meta device, so nothing is allocated or computed.
    """
    rows = []
    overrides = {} if backbone is None else {"backbone": backbone}
    for name in names if names is not None else list_models():
        with torch.device("meta"):
            model = create_model(name, **overrides)
        counts = complexity(model)
        row: Dict[str, object] = {
            "name": name,
            "backbone": model.config.backbone,
            "tasks": list(model.tasks),
            "input_size": list(model.input_size),
            "params": counts["params"],
            "macs": counts["macs"],
            "thesis_params": None,
            "thesis_flops": None,
        }
        match = _PRESET.match(name)
        thesis = THESIS_BASELINE_FIGURES.get(name)
        if match and match.group(1) == "pose":
            thesis = THESIS_POSE_FIGURES.get(int(match.group(2)))
        if thesis and backbone is None:
            row["thesis_params"], row["thesis_flops"] = thesis
        rows.append(row)
    return rows


def sharing_rows(rows: Sequence[Dict[str, object]]) -> List[Dict[str, object]]:
    """For each phi with pose, seg and mtl rows: the joint model's MACs and params against both separate
    models together (``macs_ratio`` <= 0.65 is the point of the library)."""
    by_name = {r["name"]: r for r in rows}
    out = []
    for name, row in by_name.items():
        match = _PRESET.match(str(name))
        if not match or match.group(1) != "mtl":
            continue
        pose, seg = by_name.get(f"pose_h{match.group(2)}"), by_name.get(f"seg_h{match.group(2)}")
        if pose is None or seg is None:
            continue
        separate_macs = int(pose["macs"]) + int(seg["macs"])  # type: ignore[arg-type]
        separate_params = int(pose["params"]) + int(seg["params"])  # type: ignore[arg-type]
        out.append(
            {
                "phi": int(match.group(2)),
                "mtl_macs": row["macs"],
                "separate_macs": separate_macs,
                "macs_ratio": int(row["macs"]) / separate_macs,  # type: ignore[arg-type]
                "mtl_params": row["params"],
                "separate_params": separate_params,
                "params_ratio": int(row["params"]) / separate_params,  # type: ignore[arg-type]
            }
        )
    return sorted(out, key=lambda r: -int(r["phi"]))  # type: ignore[arg-type]


def classifier_rows(names: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    """One row per compact EfficientNet classifier (thesis 4.1): Table 4.1's input size and the size the
    formula ``ceil(224 * 1.15**phi)`` gives, true params with 1000 (ImageNet) and 100 (CIFAR-100)
    classes, true MACs at the input size, and Table 4.1's printed figures where it has the row."""
    rows = []
    for name in names if names is not None else list_classifiers():
        phi = classifier_phi(name)
        counts = {}
        for classes in (1000, 100):
            with torch.device("meta"):
                counts[classes] = complexity(create_model(name, num_classes=classes))
        thesis = THESIS_TABLE_4_1.get(phi)
        rows.append({
            "name": name,
            "phi": phi,
            "input_size": counts[1000]["input_size"][0],
            "formula_input_size": classifier_resolution(phi),
            "params_1000": counts[1000]["params"],
            "params_100": counts[100]["params"],
            "macs": counts[1000]["macs"],
            "thesis": thesis._asdict() if thesis else None,
        })
    return rows
