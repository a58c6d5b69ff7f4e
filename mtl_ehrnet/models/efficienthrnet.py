"""The EfficientHRNet model: one class for single-task pose, single-task segmentation and multi-task.

``backbone -> shared HRNet stages -> (per-task HRNet stages) -> heads``. With ``share="all"`` both heads
read the same HRNet body (the thesis 5.2 joint network); ``"s2"``, ``"s1"`` and ``"backbone"`` split the
trunk after that HRNet stage, giving each task its own copy of the remaining stages.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Tuple

import torch
from torch import nn

from mtl_ehrnet.models.backbone import EfficientNetBackbone
from mtl_ehrnet.models.config import SHARE_POINTS, ModelConfig
from mtl_ehrnet.models.hrnet import NUM_STAGES, HRNetBody
from mtl_ehrnet.models.hrnet_stem import HRNetStemBackbone
from mtl_ehrnet.models.init import init_conv_bn, init_prediction_layers
from mtl_ehrnet.models.pose_head import PoseHead
from mtl_ehrnet.models.seg_head import SegHead
from mtl_ehrnet.models.size_check import check_input_size
from mtl_ehrnet.models.timm_backbone import TimmBackbone
from mtl_ehrnet.models.torchvision_backbone import TorchvisionBackbone

STRIDE = 32


class TrunkFeatures(NamedTuple):
    """What the shared trunk computes: the backbone taps and the shared HRNet branches.

    ``branches`` are the outputs of the last shared HRNet stage, branch i at stride 2**(i+2); with
    ``share="backbone"`` nothing of the body is shared and ``branches`` equals ``taps``.
    """

    taps: List[torch.Tensor]
    branches: List[torch.Tensor]


class EfficientHRNet(nn.Module):
    """Bottom-up pose estimation and/or semantic segmentation network.

    Args:
        config: architecture (see :class:`ModelConfig`); build one with ``mtl_ehrnet.create_model``.

    Shape: images (B, 3, H, W), H and W multiples of 32 -> dict with, per head present,
        ``"heatmaps"`` (B, K, H/2, W/2), ``"heatmaps_lr"`` (B, K, H/4, W/4), ``"tags"`` (B, K, H/4, W/4),
        ``"seg"`` (B, C, H/4, W/4).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = _build_backbone(config)
        taps = self.backbone.out_channels
        heads = {"pose": _pose_head, "seg": _seg_head}
        multi_branch = {task: task == "seg" for task in config.tasks}
        split = SHARE_POINTS[config.share] if len(config.tasks) > 1 else NUM_STAGES
        self.body = HRNetBody(
            config.body, taps, 0, split, multi_scale_output=split < NUM_STAGES or any(multi_branch.values())
        )
        self.task_bodies = nn.ModuleDict(
            {t: HRNetBody(config.body, taps, split, NUM_STAGES, multi_branch[t]) for t in config.tasks}
            if split < NUM_STAGES
            else {}
        )
        self.heads = nn.ModuleDict()
        for task in config.tasks:
            body = self.task_bodies[task] if split < NUM_STAGES else self.body
            self.heads[task] = heads[task](config, body.out_channels)
        for part in (self.body, self.task_bodies, self.heads):
            init_conv_bn(part)
        for head in self.heads.values():
            init_prediction_layers(head.prediction_layers())

    @property
    def tasks(self) -> Tuple[str, ...]:
        return self.config.tasks

    @property
    def input_size(self) -> Tuple[int, int]:
        """Native (H, W) input of this model (thesis eq. 3.6 for the EfficientHRNet presets)."""
        return self.config.input_size

    def forward_features(self, images: torch.Tensor) -> TrunkFeatures:
        """Runs the shared trunk (what distillation hints read).

        Shape: (B, 3, H, W) -> TrunkFeatures.
        """
        check_input_size(images, STRIDE)
        taps = self.backbone(images)
        branches = self.body(taps) if len(self.body.stages) else list(taps)
        return TrunkFeatures(taps, branches)

    def forward_heads(self, features: TrunkFeatures) -> Dict[str, torch.Tensor]:
        """Runs the per-task stages and the heads on the trunk's features."""
        outputs: Dict[str, torch.Tensor] = {}
        shared = None if len(self.body.stages) == 0 else features.branches
        for task, head in self.heads.items():
            if task in self.task_bodies:
                branches = self.task_bodies[task](features.taps, shared)
            else:
                branches = features.branches
            outputs.update(head(branches))
        return outputs

    def forward(self, images: torch.Tensor, return_features: bool = False) -> Dict[str, torch.Tensor]:
        """The output contract; with ``return_features`` also ``"trunk"``: the shared branches (a list),
        for feature-hint distillation (one forward pass, and DDP sees it)."""
        features = self.forward_features(images)
        outputs = self.forward_heads(features)
        # The legacy ONNX tracer passes default arguments as tensors; exported graphs never return features.
        if not torch.jit.is_tracing() and return_features:
            outputs["trunk"] = features.branches  # type: ignore[assignment]
        return outputs


def _build_backbone(config: ModelConfig) -> nn.Module:
    if config.backbone == "efficientnet":
        return EfficientNetBackbone(config.phi, lite=config.lite, tf_padding=config.tf_padding, bn_eps=config.bn_eps)
    if config.backbone == "hrnet_stem":
        return HRNetStemBackbone(stage1_blocks=config.stage1_blocks, stage1_channels=config.stage1_channels)
    library, _, name = config.backbone.partition(":")
    if library == "timm":
        return TimmBackbone(name)
    return TorchvisionBackbone(name)


def _pose_head(config: ModelConfig, channels: Tuple[int, ...]) -> nn.Module:
    return PoseHead(channels[0], config.num_keypoints, config.body.widths[0], config.deconv_blocks)


def _seg_head(config: ModelConfig, channels: Tuple[int, ...]) -> nn.Module:
    return SegHead(channels, config.num_classes)
