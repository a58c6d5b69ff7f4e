import pytest

from evaluation.peak_memory import NetworkSource, cpu_peak_growth_mb
from mtl_ehrnet import create_model
from mtl_ehrnet.inference.deployment import DeploymentPath


def test_cpu_peak_growth_holds_the_weights_and_not_the_process() -> None:
    weights_mib = sum(p.numel() for p in create_model("mtl_h-4").parameters()) * 4 / 2**20
    growth = cpu_peak_growth_mb(NetworkSource("mtl_h-4"), DeploymentPath("fp32", "torch", "cpu"), (64, 64), threads=1)
    # At least the fp32 weights, and far below the size of a process that has imported torch (hundreds of MiB):
    # the growth is counted from before the network exists.
    assert weights_mib <= growth < 150


def test_cpu_peak_growth_refuses_what_it_cannot_measure() -> None:
    with pytest.raises(ValueError, match=r"fp32:onnxruntime runs an ONNX graph: give NetworkSource\(graph=...\)"):
        cpu_peak_growth_mb(NetworkSource("mtl_h-4"), DeploymentPath("fp32", "onnxruntime", "cpu"), (64, 64))
    with pytest.raises(ValueError, match="measures CPU paths; fp16:torch runs on cuda"):
        cpu_peak_growth_mb(NetworkSource("mtl_h-4"), DeploymentPath("fp16", "torch", "cuda"), (64, 64))
