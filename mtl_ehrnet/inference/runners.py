"""The network behind a deployment path: one callable per path that takes the normalised float32 batch
``Predictor`` builds and returns the model's outputs in float32.

Shape: images (B, 3, H, W) float32, H and W multiples of 32 -> dict of the output contract, float32
(``"heatmaps"`` (B, K, H/2, W/2), ``"heatmaps_lr"`` and ``"tags"`` (B, K, H/4, W/4), ``"seg"`` (B, C, H/4, W/4)).
"""
from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from mtl_ehrnet.inference.deployment import DeploymentPath
from mtl_ehrnet.inference.fold_batchnorm import fold_batch_norms, foldable_pairs

# What torch.compile hands the captured graphs to; tests swap in "eager" to count compilations quickly.
COMPILE_BACKEND = "inductor"
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TorchRunner(nn.Module):
    """The PyTorch model in eval mode, optionally channels-last, under bf16 / fp16 autocast, compiled.

    Autocast keeps weights in fp32 and runs convolutions and matrix products in the low precision (batch
    norm and reductions stay fp32), which keeps bf16 within 0.005 AP / mIoU of fp32 (docs/results.md).

    Args:
        model: returns the dict of the output contract; converted in place (memory format, device, batch norms
            folded when ``path.fold_batchnorm``).
        path: precision fp32 / bf16 / fp16 on backend torch or torch.compile.
    """

    def __init__(self, model: nn.Module, path: DeploymentPath) -> None:
        super().__init__()
        self.model = model.eval().to(path.device)
        if path.fold_batchnorm:
            fold_batch_norms(self.model)
        if path.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.path = path
        self.eval()  # a runner is for inference; train() would put batch norm back on batch statistics
        self._network = self.model
        if path.backend == "torch.compile":
            # Height and width are marked dynamic at every call (below), so a stream of differently padded
            # images compiles once for all sizes instead of once per size.
            self._network = torch.compile(self.model, backend=COMPILE_BACKEND, dynamic=None)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        images = images.to(self.path.device, torch.float32)
        if self.path.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.path.backend == "torch.compile":
            torch._dynamo.mark_dynamic(images, 2)
            torch._dynamo.mark_dynamic(images, 3)
        dtype = _AUTOCAST.get(self.path.precision)
        context = torch.autocast(self.path.device, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with context:
            outputs = self._network(images)
        return {name: value.float() for name, value in outputs.items()}


class OnnxRunner(nn.Module):
    """The model exported to ONNX (free batch, height and width) and run by ONNX Runtime: fp32, static INT8
    (:func:`mtl_ehrnet.inference.quantize.quantize_int8`) or, on CUDA, TensorRT fp32 / fp16.

    Args:
        model: exported on the CPU at ``input_size``; left as it was.
        path: backend onnxruntime (fp32, int8) or tensorrt (fp32, fp16).
        input_size: (H, W), multiples of 32, to export and check at.
        calibration: for INT8, normalised float32 batches (1, 3, H, W) as ``Predictor`` feeds the network.
        threads: ONNX Runtime intra-op threads (default torch's).
        keep_graph: keep the graph's bytes in ``graph`` (to save it, or to load it in another process).
    """

    def __init__(self, model: nn.Module, path: DeploymentPath, input_size: Sequence[int],
                 calibration: Optional[Sequence[np.ndarray]] = None, threads: Optional[int] = None,
                 keep_graph: bool = False) -> None:
        super().__init__()
        # Imported here: onnx and onnxruntime load only when an ONNX path is built.
        from mtl_ehrnet.inference.onnx_export import export_onnx
        from mtl_ehrnet.inference.onnx_runtime import OnnxModel
        from mtl_ehrnet.inference.quantize import quantize_int8

        if path.precision == "int8" and not calibration:
            raise ValueError("INT8 needs calibration images (Predictor(calibration=[...]), --calibration ROOT)")
        self.path = path
        self.eval()
        with tempfile.TemporaryDirectory(prefix="mtl_ehrnet_onnx_") as folder:
            graph = Path(folder) / "model.onnx"
            export_onnx(model, graph, tuple(input_size), True, dynamic_size=True, check=False)
            if path.precision == "int8":
                quantized = Path(folder) / "model_int8.onnx"
                quantize_int8(graph, quantized, calibration)
                graph = quantized
            data = graph.read_bytes()
            self.session = OnnxModel(data, tasks=getattr(model, "tasks", None),
                                     config=getattr(model, "config", None), input_size=tuple(input_size),
                                     threads=threads or torch.get_num_threads(), providers=providers_for(path))
        self.graph: Optional[bytes] = data if keep_graph else None

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {name: value.float() for name, value in self.session(images).items()}


def providers_for(path: DeploymentPath) -> list:
    """ONNX Runtime's execution providers for ``path``, preferred first."""
    if path.backend == "tensorrt":
        options = {"trt_fp16_enable": path.precision == "fp16", "trt_engine_cache_enable": True}
        return [("TensorrtExecutionProvider", options), "CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if path.device == "cuda" else ["CPUExecutionProvider"]


def build_runner(model: nn.Module, path: DeploymentPath, input_size: Sequence[int],
                 calibration: Optional[Sequence[np.ndarray]] = None, threads: Optional[int] = None,
                 keep_graph: bool = False) -> nn.Module:
    """The callable that runs ``model`` on ``path`` (see the module doc for its shapes); ``keep_graph``: an
    ONNX path keeps its graph's bytes in ``runner.graph``."""
    if path.backend in ("torch", "torch.compile"):
        return TorchRunner(model, path)
    return OnnxRunner(model, path, input_size, calibration, threads, keep_graph)


def runner_keeping_model(model: nn.Module, path: DeploymentPath, input_size: Sequence[int],
                         calibration: Optional[Sequence[np.ndarray]] = None) -> nn.Module:
    """:func:`build_runner` that leaves ``model``'s weights as they are: a PyTorch path that folds batch norms
    gets a copy, and only when there is something to fold (a wrapped ONNX Runtime session, say, has nothing
    to fold and cannot be copied)."""
    folds = path.fold_batchnorm and path.backend.startswith("torch") and bool(foldable_pairs(model))
    return build_runner(copy.deepcopy(model) if folds else model, path, input_size, calibration)
