"""The HRNet body: three stages of parallel multi-resolution branches with repeated fusion.

EfficientHRNet (thesis section 3.1, fig. 3.1) replaces HRNet's stem and stage 1 with an EfficientNet
and keeps HRNet's stages 2-4, called s1-s3 in the thesis, with 2, 3 and 4 branches at strides 4, 8, 16
and 32. Two rules for where a stage's new branch comes from are supported:

* ``"tap"`` (EfficientHRNet): from the backbone feature map of the branch's stride, through a
  3x3 conv + BN + ReLU; every existing branch entering a stage also passes a 3x3 transition.
* ``"strided"`` (classic HRNet/HigherHRNet): from the previous stage's lowest-resolution branch through
  a 3x3 stride-2 conv + BN + ReLU; existing branches pass a transition only where widths change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Literal, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from mtl_ehrnet.models.blocks import BasicBlock, make_blocks

NUM_STAGES = 3


@dataclass(frozen=True)
class BodyConfig:
    """Architecture of an HRNet body.

    Attributes:
        widths: channels of branches 1-4 (strides 4, 8, 16, 32).
        modules: HRNet modules in stages s1, s2, s3.
        blocks: BASIC blocks per branch in every module (EfficientHRNet 2, HRNet-W32 4).
        new_branch: where a stage's new branch comes from, ``"tap"`` or ``"strided"``.
        fuse_upsample: how a fusion brings a lower-resolution branch up, ``"nearest"`` (HRNet pose code,
            EfficientHRNet) or ``"bilinear"`` (HRNet-Semantic-Segmentation).
    """

    widths: Tuple[int, int, int, int]
    modules: Tuple[int, int, int]
    blocks: int = 2
    new_branch: Literal["tap", "strided"] = "tap"
    fuse_upsample: Literal["nearest", "bilinear"] = "nearest"

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise ValueError(f"widths must be 4 positive channel counts, got {self.widths}")
        if len(self.modules) != NUM_STAGES or min(self.modules) < 1:
            raise ValueError(f"modules must be 3 counts >= 1, got {self.modules}")
        if self.new_branch not in ("tap", "strided"):
            raise ValueError(f"new_branch must be 'tap' or 'strided', got {self.new_branch!r}")
        if self.fuse_upsample not in ("nearest", "bilinear"):
            raise ValueError(f"fuse_upsample must be 'nearest' or 'bilinear', got {self.fuse_upsample!r}")


class HighResolutionModule(nn.Module):
    """Parallel BASIC-block branches followed by all-to-all fusion.

    Fusion into branch i sums: branch i itself; every lower-resolution branch j > i through a 1x1 conv +
    BN + upsampling by 2**(j-i) (nearest or bilinear); every higher-resolution branch j < i through i-j chained 3x3
    stride-2 conv + BN (+ReLU but the last). A ReLU follows the sum.

    Args:
        widths: channels per branch; output branch i keeps ``widths[i]``.
        blocks: BASIC blocks per branch.
        multi_scale_output: fuse into every branch (True) or into branch 1 only (False).
        upsample: ``"nearest"`` or ``"bilinear"`` (align_corners False) for lower-resolution branches.
    Shape: list of (B, widths[i], H / 2**i, W / 2**i) -> the same list (or its first element only).
    """

    def __init__(
        self, widths: Sequence[int], blocks: int, multi_scale_output: bool = True, upsample: str = "nearest"
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(make_blocks(BasicBlock, w, w, blocks) for w in widths)
        outputs = len(widths) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(widths, src, dst, upsample) for src in range(len(widths)))
            for dst in range(outputs)
        )
        # One ReLU per output rather than one shared: a module called once per sum keeps each sum + ReLU its own
        # pattern for graph tools (PT2E quantisers match conv + add + ReLU by module).
        self.relus = nn.ModuleList(nn.ReLU(inplace=True) for _ in range(outputs))

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for paths, relu in zip(self.fuse_layers, self.relus):
            total = paths[0](xs[0])
            for path, x in zip(paths[1:], xs[1:]):
                total = total + path(x)
            fused.append(relu(total))
        return fused


def _fuse_path(widths: Sequence[int], src: int, dst: int, upsample: str) -> nn.Module:
    if src == dst:
        return nn.Identity()
    if src > dst:
        # Branch sizes are exact multiples (inputs divisible by 32), so a scale factor is the same as
        # interpolating to the higher-resolution branch's size.
        align = False if upsample == "bilinear" else None
        return nn.Sequential(
            Conv2dNormActivation(widths[src], widths[dst], 1, activation_layer=None),
            nn.Upsample(scale_factor=2 ** (src - dst), mode=upsample, align_corners=align),
        )
    steps = dst - src
    convs = [
        Conv2dNormActivation(widths[src], widths[src], 3, 2, activation_layer=nn.ReLU)
        for _ in range(steps - 1)
    ]
    convs.append(Conv2dNormActivation(widths[src], widths[dst], 3, 2, activation_layer=None))
    return nn.Sequential(*convs)


class HRNetStage(nn.Module):
    """One stage: transitions into ``index + 2`` branches, then HRNet modules.

    Args:
        index: 0, 1 or 2 for s1, s2, s3.
        in_channels: channels of the branches entering the stage (for s1: the stride-4 tap).
        tap_channels: channels of the backbone tap the new branch is made from (``"tap"`` rule).
        config: the body's architecture.
        multi_scale_output: whether the stage's last module outputs every branch.
    """

    def __init__(
        self,
        index: int,
        in_channels: Sequence[int],
        tap_channels: Optional[int],
        config: BodyConfig,
        multi_scale_output: bool = True,
    ) -> None:
        super().__init__()
        self.index = index
        self.new_branch = config.new_branch
        widths = config.widths[: index + 2]
        always = config.new_branch == "tap"
        self.transitions = nn.ModuleList(
            Conv2dNormActivation(c, w, 3, activation_layer=nn.ReLU) if always or c != w else nn.Identity()
            for c, w in zip(in_channels, widths)
        )
        if config.new_branch == "tap":
            if tap_channels is None:
                raise ValueError(f"stage s{index + 1} needs a backbone tap for its new branch")
            self.new_branch_transition = Conv2dNormActivation(tap_channels, widths[-1], 3, activation_layer=nn.ReLU)
        else:
            self.new_branch_transition = Conv2dNormActivation(
                in_channels[-1], widths[-1], 3, 2, activation_layer=nn.ReLU
            )
        count = config.modules[index]
        self.modules_ = nn.Sequential(
            *(
                HighResolutionModule(widths, config.blocks, multi_scale_output or i < count - 1, config.fuse_upsample)
                for i in range(count)
            )
        )
        self.out_channels: Tuple[int, ...] = tuple(widths) if multi_scale_output else (widths[0],)

    def forward(self, branches: List[torch.Tensor], taps: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        source = taps[self.index + 1] if self.new_branch == "tap" else branches[-1]
        xs = [t(b) for t, b in zip(self.transitions, branches)]
        xs.append(self.new_branch_transition(source))
        return self.modules_(xs)


class HRNetBody(nn.Module):
    """Stages ``start .. end - 1`` of the HRNet body.

    A whole body is ``start=0, end=3``. A multi-task model that splits its trunk after stage k holds a
    shared body ``(0, k)`` and one body ``(k, 3)`` per task, which continues from the shared branches.

    Args:
        config: widths, module counts, block counts and transition rule.
        tap_channels: channels of the backbone taps (4 for the ``"tap"`` rule; the first is enough for
            ``"strided"``).
        start, end: stage range held by this body.
        multi_scale_output: whether the last stage outputs all its branches or only branch 1.

    Shape: taps (list of (B, tap_channels[i], H / 2**(i+2), W / 2**(i+2))) and, when ``start > 0``, the
    ``start + 1`` branches entering stage ``start`` -> list of ``len(out_channels)`` maps, branch i at
    stride 2**(i+2).
    """

    def __init__(
        self,
        config: BodyConfig,
        tap_channels: Sequence[int],
        start: int = 0,
        end: int = NUM_STAGES,
        multi_scale_output: bool = True,
    ) -> None:
        super().__init__()
        if not 0 <= start <= end <= NUM_STAGES:
            raise ValueError(f"stage range must satisfy 0 <= start <= end <= 3, got ({start}, {end})")
        if config.new_branch == "tap" and len(tap_channels) < end + 1:
            raise ValueError(f"stages up to s{end} need {end + 1} backbone taps, got {len(tap_channels)}")
        self.start, self.end = start, end
        in_channels: Tuple[int, ...] = (tap_channels[0],) if start == 0 else tuple(config.widths[: start + 1])
        stages = []
        for index in range(start, end):
            last = index == end - 1
            tap = tap_channels[index + 1] if config.new_branch == "tap" else None
            stage = HRNetStage(index, in_channels, tap, config, multi_scale_output or not last)
            stages.append(stage)
            in_channels = stage.out_channels
        self.stages = nn.ModuleList(stages)
        self.out_channels: Tuple[int, ...] = in_channels

    def forward(
        self, taps: Sequence[torch.Tensor], branches: Optional[List[torch.Tensor]] = None
    ) -> List[torch.Tensor]:
        xs = [taps[0]] if branches is None else list(branches)
        for stage in self.stages:
            xs = stage(xs, taps)
        return xs
