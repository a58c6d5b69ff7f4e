"""Parameter and multiply-add counts, measured with ``torch.utils.flop_counter``.

MACs are ``FlopCounterMode``'s FLOPs / 2 (it counts a multiply-add as 2 FLOPs). Only matrix work is
counted (convolutions, transposed convolutions, matmuls); BN, activations, pooling and resampling are
not, as in the papers' tables. The thesis's own figures came from a hand-written hook counter that
counts MBConv parameters twice and transposed-conv work 4x: never use one.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def complexity(
    model: nn.Module,
    input_size: Union[int, Sequence[int]] = None,  # type: ignore[assignment]
    batch_size: int = 1,
    device: Optional[Union[str, torch.device]] = None,
) -> Dict[str, float]:
    """Counts ``params``, ``macs`` and ``flops`` (= 2 * macs) of one forward pass.

    Args:
        model: any module taking (B, 3, H, W) images.
        input_size: (H, W) or an int; defaults to ``model.input_size``.
        batch_size: B (MACs scale with it; the tables use 1).
        device: where to run the counting pass; defaults to the model's device. A model built on the
            ``"meta"`` device is counted without allocating or computing anything.

    Returns:
        ``{"params": int, "macs": int, "flops": int, "input_size": (H, W)}``.
    """
    size = _as_hw(input_size if input_size is not None else getattr(model, "input_size", None))
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    images = torch.zeros(batch_size, 3, *size, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(images)
    finally:
        model.train(was_training)
    flops = int(counter.get_total_flops())
    return {"params": count_parameters(model), "macs": flops // 2, "flops": flops, "input_size": size}


def _as_hw(size: Union[int, Sequence[int], None]) -> Tuple[int, int]:
    if size is None:
        raise ValueError("input_size is required for a model without an input_size attribute")
    if isinstance(size, int):
        return (size, size)
    if len(size) != 2:
        raise ValueError(f"input_size must be an int or (H, W), got {size!r}")
    return (int(size[0]), int(size[1]))
