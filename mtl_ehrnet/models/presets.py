"""The model table: EfficientHRNet presets for any phi and the classic HRNet baselines.

Architecture as data: each function returns a :class:`ModelConfig`; :mod:`mtl_ehrnet.models.registry`
maps names to them.
"""
from __future__ import annotations

from typing import Dict, Tuple

from mtl_ehrnet.models.config import ModelConfig
from mtl_ehrnet.models.hrnet import BodyConfig
from mtl_ehrnet.models.scaling import branch_widths, input_resolution, stage_modules

TASKS_BY_PREFIX: Dict[str, Tuple[str, ...]] = {"pose": ("pose",), "seg": ("seg",), "mtl": ("pose", "seg")}

# The phi values registered under fixed names; create_model accepts any integer phi.
REGISTERED_PHIS = (0, -1, -2, -3, -4, 1, 2)

# Thesis Table 4.2 "# Params" and "FLOPs" of the pose models. They come from the reference repo's summary
# tool, which counts multiply-adds as FLOPs, counts MBConv parameters twice and transposed-conv work 4x:
# printed beside our true counts, labelled as the thesis convention.
THESIS_POSE_FIGURES: Dict[int, Tuple[float, float]] = {
    0: (23.3e6, 25.6e9),
    -1: (16.0e6, 14.2e9),
    -2: (10.3e6, 7.7e9),
    -3: (6.9e6, 4.2e9),
    -4: (3.7e6, 2.1e9),
}
THESIS_BASELINE_FIGURES: Dict[str, Tuple[float, float]] = {
    "higherhrnet_w32": (28.6e6, 47.9e9),  # Table 4.2
    "hrnet_w18_small_v2_seg": (3.9e6, 71.6e9),  # Table 4.5, at 512x1024
}


def efficienthrnet(prefix: str, phi: int) -> ModelConfig:
    """EfficientHRNet H_phi for ``prefix`` in ``("pose", "seg", "mtl")`` (thesis Table 3.1)."""
    size = input_resolution(phi)
    return ModelConfig(
        name=f"{prefix}_h{phi}",
        tasks=TASKS_BY_PREFIX[prefix],
        body=BodyConfig(widths=branch_widths(phi), modules=stage_modules(phi)),
        input_size=(size, size),
        backbone="efficientnet",
        phi=phi,
    )


def _higherhrnet(width: int, size: int) -> ModelConfig:
    return ModelConfig(
        name=f"higherhrnet_w{width}",
        tasks=("pose",),
        body=BodyConfig(
            widths=(width, 2 * width, 4 * width, 8 * width), modules=(1, 4, 3), blocks=4, new_branch="strided"
        ),
        input_size=(size, size),
        backbone="hrnet_stem",
        stage1_blocks=4,
        deconv_blocks=4,
    )


def higherhrnet_w32() -> ModelConfig:
    """HigherHRNet-W32 (Cheng et al. 2020): HRNet stem + stage 1 of 4 bottlenecks, 4 BASIC blocks per
    branch, branches grown by strided convs, deconv block with 4 BASIC blocks; 512 input."""
    return _higherhrnet(32, 512)


def higherhrnet_w48() -> ModelConfig:
    """HigherHRNet-W48: HigherHRNet-W32's layout with branch widths 48, 96, 192, 384; 640 input."""
    return _higherhrnet(48, 640)


def _hrnet_seg(name: str, widths: Tuple[int, int, int, int], modules: Tuple[int, int, int], blocks: int,
               stage1_blocks: int, stage1_channels: int) -> ModelConfig:
    # HRNet-Semantic-Segmentation fuses lower-resolution branches with bilinear upsampling.
    return ModelConfig(
        name=name,
        tasks=("seg",),
        body=BodyConfig(widths=widths, modules=modules, blocks=blocks, new_branch="strided", fuse_upsample="bilinear"),
        input_size=(512, 1024),
        backbone="hrnet_stem",
        stage1_blocks=stage1_blocks,
        stage1_channels=stage1_channels,
    )


def hrnet_w18_small_v2_seg() -> ModelConfig:
    """HRNetV2-W18-small-v2 segmentation (thesis Table 4.5): stage 1 of 2 bottlenecks, modules (1, 3, 2),
    2 BASIC blocks per branch; Cityscapes crop 512x1024."""
    return _hrnet_seg("hrnet_w18_small_v2_seg", (18, 36, 72, 144), (1, 3, 2), 2, 2, 64)


def hrnet_w18_small_v1_seg() -> ModelConfig:
    """HRNetV2-W18-small-v1 segmentation: stage 1 of one 32-wide bottleneck, widths 16-128, one module
    per stage, 2 BASIC blocks per branch."""
    return _hrnet_seg("hrnet_w18_small_v1_seg", (16, 32, 64, 128), (1, 1, 1), 2, 1, 32)


def hrnet_w48_seg() -> ModelConfig:
    """HRNetV2-W48 segmentation: HRNet-W48 (stage 1 of 4 bottlenecks, modules (1, 4, 3), 4 BASIC blocks)."""
    return _hrnet_seg("hrnet_w48_seg", (48, 96, 192, 384), (1, 4, 3), 4, 4, 64)


BASELINES = {
    "higherhrnet_w32": higherhrnet_w32,
    "higherhrnet_w48": higherhrnet_w48,
    "hrnet_w18_small_v1_seg": hrnet_w18_small_v1_seg,
    "hrnet_w18_small_v2_seg": hrnet_w18_small_v2_seg,
    "hrnet_w48_seg": hrnet_w48_seg,
}
