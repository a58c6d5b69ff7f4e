"""Any torchvision classification network as the backbone (``backbone="torchvision:NAME"``).

The network comes from ``torchvision.models.get_model(NAME, weights=None)`` (nothing is downloaded) and
its taps from ``torchvision.models.feature_extraction.create_feature_extractor``.

Which modules are tapped (the rule): the network is run once on the meta device (shapes only, nothing
computed) on a 224x224 input, recording every module's output. Walking the module tree from the top,
the first depth whose modules produce NCHW maps at all four strides 4, 8, 16, 32 is used, and at each
stride the module that ran last is tapped: ``layer1``-``layer4`` of a ResNet, ``features.3/6/12/16`` of
MobileNetV3-Large. Modules that run more than once are not tapped.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Mapping, Tuple

import torch
from torch import nn

from mtl_ehrnet.models.feature_levels import STRIDES, FeatureLevel, build_anywhere, match_foreign_keys, select_levels

# Probe input: 224 is the one size every torchvision classifier accepts (ViTs need exactly it).
_PROBE = 224


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier cut to its last module at each stride 4, 8, 16, 32 (see the module rule).

    Args:
        name: a torchvision classification model name (``torchvision.models.list_models``), e.g.
            ``"mobilenet_v3_large"``.

    Attributes:
        out_channels: channels of the four taps.
        strides: (4, 8, 16, 32).
        levels: the tapped modules (name, reduction, channels).

    Shape: (B, 3, H, W) -> list of 4 maps (B, out_channels[i], H / strides[i], W / strides[i]).

    Raises:
        ValueError: unknown name, or no module depth with maps at every stride (the message lists the
            strides and channels offered at the depth that comes closest).
    """

    strides: Tuple[int, ...] = STRIDES

    def __init__(self, name: str) -> None:
        super().__init__()
        from torchvision.models import get_model, list_models
        from torchvision.models.feature_extraction import create_feature_extractor

        spec = f"torchvision:{name}"
        if name not in list_models():
            raise ValueError(
                f"unknown torchvision model {name!r} (backbone {spec!r}); see torchvision.models.list_models()"
            )
        network = build_anywhere(lambda: get_model(name, weights=None))
        # A meta copy: some builders (RegNet) compute widths with tensors and cannot run on meta themselves.
        probe = network if _on_meta(network) else copy.deepcopy(network).to("meta")
        levels = _choose_levels(spec, _module_levels(probe))
        self.model = create_feature_extractor(network, return_nodes={lv.name: str(i) for i, lv in enumerate(levels)})
        self.out_channels: Tuple[int, ...] = tuple(lv.channels for lv in levels)
        self.levels: List[FeatureLevel] = levels

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        maps = self.model(x)
        return [maps[str(i)] for i in range(len(self.strides))]

    def adapt_state_dict(self, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Renames a torchvision classifier (or our checkpoint's) state dict to this wrapper's keys."""
        return match_foreign_keys(list(self.state_dict()), state)


def _on_meta(network: nn.Module) -> bool:
    first = next(network.parameters(), None)
    return first is not None and first.is_meta


def _module_levels(network: nn.Module) -> List[FeatureLevel]:
    """Every module that ran exactly once and returned an NCHW map at an integer stride, in run order."""
    calls: Dict[str, List[torch.Size]] = {}

    def record(name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            calls.setdefault(name, []).append(output.shape if isinstance(output, torch.Tensor) else None)
            calls[name] = calls.pop(name)  # dict order = order of the last call

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in network.named_modules() if n]
    try:
        with torch.no_grad():
            network.eval()(torch.zeros(1, 3, _PROBE, _PROBE, device="meta"))
    except Exception as err:
        raise ValueError(
            f"cannot probe the feature maps of {type(network).__name__} at {_PROBE}x{_PROBE}: {err}"
        ) from err
    finally:
        for handle in handles:
            handle.remove()
    levels = []
    for name, shapes in calls.items():
        shape = shapes[0]
        if (
            len(shapes) == 1
            and shape is not None
            and len(shape) == 4
            and shape[2] == shape[3]
            and _PROBE % shape[2] == 0
        ):
            levels.append(FeatureLevel(name, _PROBE // shape[2], shape[1]))
    return levels


def _choose_levels(spec: str, levels: List[FeatureLevel]) -> List[FeatureLevel]:
    """The first module depth with maps at every stride in :data:`STRIDES`; its last module per stride."""
    by_depth: Dict[int, List[FeatureLevel]] = {}
    for level in levels:
        by_depth.setdefault(level.name.count(".") + 1, []).append(level)
    for depth in sorted(by_depth):
        candidates = by_depth[depth]
        if all(any(lv.reduction == s for lv in candidates) for s in STRIDES):
            return [candidates[i] for i in select_levels(spec, candidates)]
    select_levels(spec, levels)  # raises, listing every map the network offers
    raise AssertionError("unreachable")
