"""Any timm network with ``features_only`` support as the backbone (``backbone="timm:NAME"``).

timm is imported lazily: ``import mtl_ehrnet`` stays fast and timm is only needed when used. Nothing is
downloaded: the network is always created with ``pretrained=False``; weights come from a local file
through :func:`mtl_ehrnet.models.weights.load_backbone_weights`.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import torch
from torch import nn

from mtl_ehrnet.models.feature_levels import FeatureLevel, build_anywhere, match_foreign_keys, select_levels


class TimmBackbone(nn.Module):
    """A timm ``features_only`` network returning its last feature map at each stride 4, 8, 16, 32.

    Levels are read from the network's ``feature_info`` (probed on the meta device, so nothing is
    computed); indices into that list are timm's ``out_indices``.

    Args:
        name: a timm model name (``timm.list_models()``), e.g. ``"mobilenetv3_large_100"``.

    Attributes:
        out_channels: channels of the four taps (timm ``feature_info.channels()``).
        strides: (4, 8, 16, 32).
        levels: the timm feature levels used (module name, reduction, channels).

    Shape: (B, 3, H, W) -> list of 4 maps (B, out_channels[i], H / strides[i], W / strides[i]).

    Raises:
        ValueError: unknown name, no ``features_only`` support, or no feature level at some stride (the
            message lists the strides and channels it offers).
    """

    strides: Tuple[int, ...] = (4, 8, 16, 32)

    def __init__(self, name: str) -> None:
        super().__init__()
        import timm

        spec = f"timm:{name}"
        if not timm.is_model(name):
            raise ValueError(f"unknown timm model {name!r} (backbone {spec!r}); see timm.list_models()")
        with torch.device("meta"):
            info = build_anywhere(lambda: timm.create_model(name, pretrained=False)).feature_info
        offered = [FeatureLevel(f["module"], f["reduction"], f["num_chs"]) for f in info]
        out_indices = tuple(select_levels(spec, offered))
        self.model = build_anywhere(
            lambda: timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
        )
        if tuple(self.model.feature_info.reduction()) != self.strides:
            raise ValueError(
                f"{spec!r}: features_only gave strides {self.model.feature_info.reduction()}, expected {self.strides}"
            )
        self.out_channels: Tuple[int, ...] = tuple(self.model.feature_info.channels())
        self.levels: List[FeatureLevel] = [offered[i] for i in out_indices]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return list(self.model(x))

    def adapt_state_dict(self, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Renames a timm classifier (or our checkpoint's) state dict to this wrapper's keys."""
        return match_foreign_keys(list(self.state_dict()), state)
