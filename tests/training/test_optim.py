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
    optimizers = [
        fused_if_supported(torch.optim.Adam, [weights[0]], lr=1e-2),
        torch.optim.Adam([weights[1]], lr=1e-2, foreach=False),
    ]
    for _ in range(5):
        grad = torch.randn(5, 4)
        for weight, optimizer in zip(weights, optimizers):
            weight.grad = grad.clone()
            optimizer.step()
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
    assert not torch.equal(weights[0].detach(), start)


def _net() -> torch.nn.Module:
    return torch.nn.ModuleDict(
        {"body": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)), "head": torch.nn.Linear(2, 1)}
    )


def test_lr_factors_put_each_parameter_in_its_prefix_group_and_the_scheduler_keeps_the_ratio() -> None:
    from mtl_ehrnet.training.optim import build_scheduler

    net = _net()
    config = RunConfig(lr=0.1, lr_factors={"body.": 0.5, "body.1.": 0.1}, schedule="step", milestones=(1,), epochs=2)
    names, params = zip(*net.named_parameters())
    optimizer = build_optimizer(params, config, names=names)
    by_lr = {round(g["lr"], 6): {id(p) for p in g["params"]} for g in optimizer.param_groups}
    assert by_lr == {
        0.05: {id(p) for p in net["body"][0].parameters()},
        0.01: {id(p) for p in net["body"][1].parameters()},
        0.1: {id(p) for p in net["head"].parameters()},
    }  # the longest prefix wins
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=1)
    optimizer.step(), scheduler.step()  # past the milestone: x0.1 in every group
    assert sorted(round(g["lr"], 6) for g in optimizer.param_groups) == [0.001, 0.005, 0.01]
    with pytest.raises(ValueError, match="need the parameters' names"):
        build_optimizer(params, config)
    with pytest.raises(ValueError, match="lr_factors must be finite and >= 0"):
        RunConfig(lr_factors={"body.": -1.0})


def test_covering_prefixes_name_whole_modules_where_they_can() -> None:
    from mtl_ehrnet.training.optim import covering_prefixes

    net = _net()
    assert covering_prefixes(net, {"body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias"}) == ["body."]
    assert covering_prefixes(net, {"body.0.weight", "body.0.bias", "body.1.weight"}) == ["body.0.", "body.1.weight"]
    assert covering_prefixes(net, {n for n, _ in net.named_parameters()}) == [""]
    assert covering_prefixes(net, {"running_mean"}) == []  # buffers and unknown names select nothing
