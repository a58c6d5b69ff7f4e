"""The optimizer factory: fused kernels where PyTorch has them, the plain implementation elsewhere."""
from __future__ import annotations

from typing import List

import pytest
import torch

from mtl_ehrnet.training.optim import build_optimizer, fused_if_supported
from mtl_ehrnet.training.run_config import RunConfig

FUSED_ON_CPU = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 4)


@pytest.mark.skipif(not FUSED_ON_CPU, reason="fused Adam on the CPU needs torch >= 2.4")
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_recipes_get_the_fused_kernel_on_the_cpu(name: str) -> None:
    optimizer = build_optimizer(torch.nn.Linear(3, 2).parameters(), RunConfig(optimizer=name, lr=0.1))
    assert optimizer.defaults["fused"] is True


class _NoFusedKernel(torch.optim.Adam):
    """An Adam that refuses ``fused`` as releases before 2.4 did for CPU parameters."""

    def __init__(self, params: List[torch.nn.Parameter], fused: bool = False, **hyper: float) -> None:
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        super().__init__(params, **hyper)


def test_an_optimizer_without_a_fused_kernel_falls_back_and_still_steps() -> None:
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = fused_if_supported(_NoFusedKernel, [weight], lr=0.5)
    assert not optimizer.defaults["fused"]
    weight.grad = torch.ones(2)
    optimizer.step()
    assert torch.allclose(weight.detach(), torch.full((2,), 0.5))


def test_fused_and_looped_adam_take_the_same_steps() -> None:
    torch.manual_seed(0)
    start = torch.randn(5, 4)
    weights = [torch.nn.Parameter(start.clone()) for _ in range(2)]
    optimizers = [fused_if_supported(torch.optim.Adam, [weights[0]], lr=1e-2), torch.optim.Adam([weights[1]], lr=1e-2, foreach=False)]
    for _ in range(5):
        grad = torch.randn(5, 4)
        for weight, optimizer in zip(weights, optimizers):
            weight.grad = grad.clone()
            optimizer.step()
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
    assert not torch.equal(weights[0].detach(), start)
