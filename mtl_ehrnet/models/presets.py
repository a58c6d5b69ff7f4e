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


def higherhrnet_w32() -> ModelConfig:
    """HigherHRNet-W32 (Cheng et al. 2020): HRNet stem + stage 1 of 4 bottlenecks, 4 BASIC blocks per
    branch, branches grown by strided convs, deconv block with 4 BASIC blocks; 512 input."""
    return ModelConfig(
        name="higherhrnet_w32",
        tasks=("pose",),
        body=BodyConfig(widths=(32, 64, 128, 256), modules=(1, 4, 3), blocks=4, new_branch="strided"),
        input_size=(512, 512),
        backbone="hrnet_stem",
        stage1_blocks=4,
        deconv_blocks=4,
    )


def hrnet_w18_small_v2_seg() -> ModelConfig:
    """HRNetV2-W18-small-v2 segmentation (thesis Table 4.5): stage 1 of 2 bottlenecks, modules (1, 3, 2),
    2 BASIC blocks per branch; Cityscapes crop 512x1024."""
    return ModelConfig(
        name="hrnet_w18_small_v2_seg",
        tasks=("seg",),
        body=BodyConfig(widths=(18, 36, 72, 144), modules=(1, 3, 2), blocks=2, new_branch="strided"),
        input_size=(512, 1024),
        backbone="hrnet_stem",
        stage1_blocks=2,
    )


BASELINES = {"higherhrnet_w32": higherhrnet_w32, "hrnet_w18_small_v2_seg": hrnet_w18_small_v2_seg}
