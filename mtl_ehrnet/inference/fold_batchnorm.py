"""Batch norm folded into the convolution before it, for inference.

In eval mode ``bn(conv(x))`` is one affine map per output channel after the convolution, so it can be
absorbed into the convolution's weight and bias: one pass over the activations instead of two, and the
same outputs up to float rounding. The models of this library put every such batch norm right after its
convolution inside an ``nn.Sequential`` (torchvision's ``Conv2dNormActivation`` and the HRNet blocks), so
folding those pairs covers them without tracing the model.
"""
from __future__ import annotations

from typing import List, Tuple

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def foldable_pairs(model: nn.Module) -> List[Tuple[nn.Sequential, str, str]]:
    """Where :func:`fold_batch_norms` folds: (the ``nn.Sequential``, the convolution's name, the batch norm's name)
    for every ``BatchNorm2d`` with running statistics that directly follows a ``Conv2d`` in one."""
    pairs = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                conv, norm = module._modules[first], module._modules[second]
                if isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d and norm.track_running_stats:
                    pairs.append((module, first, second))
    return pairs


def fold_batch_norms(model: nn.Module) -> int:
    """Folds, in place, every pair of :func:`foldable_pairs` (the batch norm becomes ``nn.Identity``). The model
    must be in eval mode: folding bakes in the running statistics.

    Args:
        model: any module; its other layers are left as they are.

    Returns:
        The number of batch norms folded.

    Raises:
        ValueError: the model is in training mode.
    """
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode (call model.eval() first): folding uses "
                         "the running statistics, which training mode would not")
    pairs = foldable_pairs(model)
    for sequence, conv, norm in pairs:
        sequence._modules[conv] = fuse_conv_bn_eval(sequence._modules[conv], sequence._modules[norm])
        sequence._modules[norm] = nn.Identity()
    return len(pairs)
