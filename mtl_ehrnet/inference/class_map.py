"""The full-resolution class map from low-resolution logits, without upsampling every class.

Bilinear upsampling then argmax costs C multiply-adds per output pixel and a C-deep argmax. But where
the four logit pixels around an output pixel share their argmax class c, the interpolated logits are a
convex combination in which c wins at every corner, so c wins the interpolation too. Only the pixels
whose four neighbours disagree (the class boundaries, a few percent) need the interpolated logits; the
rest take their label from one gather. The result equals ``argmax(bilinear(logits))`` (``grid_sample``,
border padding, ``align_corners=False``) except where two classes tie within float rounding.
"""
from __future__ import annotations

from typing import Tuple

import torch


def _axis(n_out: int, n_in: int, scale: float, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lower and upper source indices (n_out,) and the upper one's weight for output positions whose
    source coordinate is ``(u + 0.5) * scale - 0.5``, clamped to the map (border padding)."""
    u = ((torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * scale - 0.5).clamp(0, n_in - 1)
    low = u.floor().long()
    return low, (low + 1).clamp(max=n_in - 1), u - low


def upsampled_argmax(logits: torch.Tensor, out_hw: Tuple[int, int], scale: Tuple[float, float]) -> torch.Tensor:
    """``argmax`` over classes of the bilinearly upsampled logits.

    Args:
        logits: (C, h, w) class scores.
        out_hw: (H, W) of the class map.
        scale: (y, x) logit pixels per output pixel: output pixel ``u`` reads logit position
            ``(u + 0.5) * scale - 0.5``.

    Returns:
        (H, W) int64 class map on the logits' device.
    """
    logits = logits.float()
    classes, h, w = logits.shape
    y0, y1, wy = _axis(out_hw[0], h, scale[0], logits.device)
    x0, x1, wx = _axis(out_hw[1], w, scale[1], logits.device)
    # Class scores last and contiguous (a copy only for NCHW logits): both the argmax over classes and the
    # gathers below then read contiguous rows of C scores.
    scores = logits.permute(1, 2, 0).contiguous()
    best = scores.argmax(-1)
    down = torch.cat((best[1:], best[-1:]), 0)
    right = torch.cat((best[:, 1:], best[:, -1:]), 1)
    corner = torch.cat((down[:, 1:], down[:, -1:]), 1)
    uniform = (best == down) & (best == right) & (best == corner)
    # index_select rather than advanced indexing: the same gathers, several times faster on a CPU.
    labels = best.index_select(0, y0).index_select(1, x0)
    ys, xs = torch.nonzero(~uniform.index_select(0, y0).index_select(1, x0), as_tuple=True)
    if ys.numel():
        rows = scores.view(h * w, classes)
        a, b = y0[ys] * w, y1[ys] * w
        c, d = x0[xs], x1[xs]
        fy, fx = wy[ys, None], wx[xs, None]
        top = rows.index_select(0, a + c) * (1 - fx) + rows.index_select(0, a + d) * fx
        bottom = rows.index_select(0, b + c) * (1 - fx) + rows.index_select(0, b + d) * fx
        labels[ys, xs] = (top * (1 - fy) + bottom * fy).argmax(1)
    return labels
