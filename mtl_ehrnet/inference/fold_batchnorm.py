"""Batch norm folded into the convolution before it, for inference.

In eval mode ``bn(conv(x))`` is one affine map per output channel after the convolution, so it can be
absorbed into the convolution's weight and bias: one pass over the activations instead of two, and the
same outputs up to float rounding. The models of this library put every such batch norm right after its
convolution inside an ``nn.Sequential`` (torchvision's ``Conv2dNormActivation`` and the HRNet blocks), so
folding those pairs covers them without tracing the model.
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norms(model: nn.Module) -> int:
    """Folds, in place, every ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential`` into that
    convolution (the batch norm becomes ``nn.Identity``). The model must be in eval mode: folding bakes in the
    running statistics.

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
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d and norm.track_running_stats:
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
                folded += 1
    return folded
