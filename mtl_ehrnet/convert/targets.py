"""What a source tensor becomes in our state dict."""

from __future__ import annotations

from typing import NamedTuple

COPY = "copy"
# A conv bias followed by BatchNorm: BN(conv(x) + b) equals BN'(conv(x)) with running_mean' = running_mean - b,
# in eval and (batch statistics subtract it too) in training; our convs before BN carry no bias.
FOLD_BIAS = "fold_bias"
# A prediction conv whose output holds heatmaps then tags where ours predicts heatmaps only.
HEATMAP_HALF = "heatmap_half"


class Target(NamedTuple):
    """``key``: our state-dict key (for ``FOLD_BIAS``: the BatchNorm module's prefix); ``op``: how."""

    key: str
    op: str = COPY
