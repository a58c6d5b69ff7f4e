import pytest
import torch
from torch import nn

from mtl_ehrnet import create_model
from mtl_ehrnet.inference import Predictor
from mtl_ehrnet.inference.fold_batchnorm import fold_batch_norms


def _model_with_statistics() -> nn.Module:
    """A small model whose batch norms hold non-trivial running statistics and affine terms, as trained ones do."""
    torch.manual_seed(0)
    model = create_model("mtl_h-4")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def _count(model: nn.Module, kind: type) -> int:
    return sum(type(m) is kind for m in model.modules())


def test_folding_keeps_the_outputs_and_removes_the_batch_norms() -> None:
    model = _model_with_statistics()
    images = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        expected = model(images)
    before = _count(model, nn.BatchNorm2d)
    folded = fold_batch_norms(model)
    assert folded > 0.9 * before
    assert _count(model, nn.BatchNorm2d) == before - folded
    with torch.inference_mode():
        got = model(images)
    for name, value in expected.items():
        assert float((got[name] - value).abs().max() / value.abs().max()) < 1e-5, name


def test_folding_a_model_in_training_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(create_model("mtl_h-4").train())


def test_predictor_folds_a_copy_and_leaves_the_model_as_given() -> None:
    model = _model_with_statistics()
    before = _count(model, nn.BatchNorm2d)
    predictor = Predictor(model, input_size=64)
    assert predictor.path.fold_batchnorm
    assert _count(model, nn.BatchNorm2d) == before
    assert _count(predictor._network.model, nn.BatchNorm2d) < before
    images = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = model(images)
        got = predictor._network(images)
    for name, value in expected.items():
        assert float((got[name] - value).abs().max() / value.abs().max()) < 1e-5, name
