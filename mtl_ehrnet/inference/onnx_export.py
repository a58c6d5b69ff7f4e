"""ONNX export of any model of the family, checked with ``onnx.checker`` and run once through ONNX
Runtime against PyTorch (thesis Table 4.4 deploys exported graphs).

The model's forward returns a dict; the exported graph has one input ``images`` (B, 3, H, W) and one
named output per head, in the output-contract order (``heatmaps``, ``heatmaps_lr``, ``tags``, ``seg``).
The graph is traced with the TorchScript exporter (``dynamo=False``): it needs no extra packages, and the
model's Python-side size check stands aside while tracing.

For Jetson / TensorRT: ``trtexec --onnx=model.onnx --saveEngine=model.engine --fp16``.
"""
from __future__ import annotations

import io
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from mtl_ehrnet.data.transforms import as_hw

PathLike = Union[str, Path]
OUTPUT_ORDER: Tuple[str, ...] = ("heatmaps", "heatmaps_lr", "tags", "seg")
OPSET = 17
PARITY_TOLERANCE = 1e-4  # fp32 ONNX Runtime vs PyTorch eager, max abs difference...
# ...for outputs of trained-model size; an output whose values reach S (untrained HigherHRNet-W32: ~1e5) is
# allowed 1e-5 * S, since fp32 rounding alone differs by ~1e-6 * S between two correct implementations.
RELATIVE_TOLERANCE = 1e-5


class TupleOutputs(nn.Module):
    """Wraps a dict-returning model so that its outputs are a tuple in a fixed order (for export).

    Shape: images (B, 3, H, W) -> tuple of tensors named by ``names``.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outputs = self.model(images)
        return tuple(outputs[name] for name in self.names)


def output_names(model: nn.Module, input_size: Tuple[int, int]) -> List[str]:
    """The model's output names in contract order, found by running it once on zeros (B=1)."""
    with torch.inference_mode():
        produced = model(torch.zeros(1, 3, *input_size, device=_device_of(model)))
    names = [n for n in OUTPUT_ORDER if n in produced] + sorted(n for n in produced if n not in OUTPUT_ORDER)
    if not names:
        raise ValueError("the model returned no outputs")
    return names


def export_onnx(
    model: nn.Module,
    path: PathLike,
    input_size: Optional[Union[int, Sequence[int]]] = None,
    dynamic_batch: bool = False,
    *,
    dynamic_size: bool = False,
    opset: int = OPSET,
    check: bool = True,
    seed: int = 0,
) -> Dict[str, Any]:
    """Exports ``model`` to ONNX at ``path`` and checks it against PyTorch.

    Args:
        model: returns the dict of the output contract; exported in eval mode on the CPU (its own mode
            and device are restored afterwards).
        path: the ``.onnx`` file to write (folders are created).
        input_size: (H, W) or one side, multiples of 32; default ``model.input_size``.
        dynamic_batch: leave the batch axis free (otherwise the graph is for B = 1).
        dynamic_size: also leave H and W free (any multiple of 32 then runs).
        opset: ONNX opset (>= 17).
        check: run ``onnx.checker`` and one ONNX Runtime pass on a random image (two images with
            ``dynamic_batch``) and report the max abs difference against PyTorch eager.
        seed: seed of the random check input.

    Returns:
        ``{"path", "input_size", "opset", "dynamic_batch", "dynamic_size", "outputs": {name: shape},
        "export_s", "bytes"}`` and with ``check``: ``"max_abs_diff": {name: float}``,
        ``"max_abs_diff_all"``, ``"reference_max_abs": {name: float}`` (the scale of the outputs the
        difference is measured on), ``"max_rel_diff_all"`` (the largest difference / scale ratio),
        ``"parity_ok"`` (every output within 1e-4, or 1e-5 of its max abs value when that exceeds 10) and
        ``"providers"``.

    Raises:
        ValueError: input sides not multiples of 32, or opset < 17.
    """
    import onnx

    size = input_size if input_size is not None else getattr(model, "input_size", None)
    if size is None:
        raise ValueError("input_size is required for a model without an input_size attribute")
    size = as_hw(size)
    if size[0] % 32 or size[1] % 32:
        raise ValueError(f"input size {size[0]}x{size[1]} must be a multiple of 32 on both sides")
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training, device = model.training, _device_of(model)
    model.eval().cpu()
    try:
        names = output_names(model, size)
        wrapper = TupleOutputs(model, names).eval()
        example = torch.zeros(1, 3, *size)
        axes = {0: "batch"} if dynamic_batch else {}
        if dynamic_size:
            axes = {**axes, 2: "height", 3: "width"}
        dynamic_axes = ({"images": axes, **{n: {k: f"{n}_{v}" if k > 0 else v for k, v in axes.items()} for n in names}}
                        if axes else None)
        start = time.perf_counter()
        with warnings.catch_warnings():
            # The TorchScript exporter announces its own deprecation; it is chosen on purpose (module doc).
            warnings.simplefilter("ignore", DeprecationWarning)
            buffer = io.BytesIO()
            torch.onnx.export(wrapper, (example,), buffer, dynamo=False, opset_version=opset, input_names=["images"],
                              output_names=names, dynamic_axes=dynamic_axes, do_constant_folding=True)
        export_s = time.perf_counter() - start
        graph = buffer.getvalue()
        path.write_bytes(graph)
        report: Dict[str, Any] = {
            "path": str(path), "input_size": list(size), "opset": opset, "dynamic_batch": dynamic_batch,
            "dynamic_size": dynamic_size, "export_s": export_s, "bytes": len(graph),
        }
        if check:
            onnx.checker.check_model(onnx.load_from_string(graph), full_check=True)
            report.update(_parity(model, graph, names, size, batch=2 if dynamic_batch else 1, seed=seed))
        with torch.inference_mode():
            shapes = [tuple(t.shape) for t in wrapper(example)]
        report["outputs"] = {n: list(s) for n, s in zip(names, shapes)}
        return report
    finally:
        model.train(was_training).to(device)


def _parity(
    model: nn.Module, graph: bytes, names: List[str], size: Tuple[int, int], batch: int, seed: int
) -> Dict[str, Any]:
    """Max abs difference between ONNX Runtime (CPU, fp32) and PyTorch eager on one random batch."""
    import onnxruntime as ort

    images = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    results = session.run(names, {"images": images.numpy()})
    with torch.inference_mode():
        reference = model(images)
    diff = {n: float(np.abs(r - reference[n].numpy()).max()) for n, r in zip(names, results)}
    scale = {n: float(reference[n].abs().max()) for n in names}
    worst = max(diff.values())
    relative = max(diff[n] / scale[n] if scale[n] else diff[n] for n in names)
    return {"max_abs_diff": diff, "max_abs_diff_all": worst, "reference_max_abs": scale, "max_rel_diff_all": relative,
            "parity_ok": all(diff[n] <= max(PARITY_TOLERANCE, RELATIVE_TOLERANCE * scale[n]) for n in names),
            "providers": session.get_providers()}


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")

