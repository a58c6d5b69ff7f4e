"""An ONNX Runtime session behind the model interface, so that ``Predictor``, ``measure_latency`` and
the dataset evaluations run an exported graph exactly as they run the PyTorch model."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

PathLike = Union[str, Path]
# Fastest first: when onnxruntime-gpu (or a TensorRT build) is installed, "auto" picks it.
PREFERRED_PROVIDERS: Tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def pick_providers(providers: Union[str, Sequence[str]] = "auto") -> List[str]:
    """Execution providers to ask for: ``"auto"`` = TensorRT, CUDA, CPU, those this build has, in that order;
    ``"cpu"`` = CPU only; or an explicit list."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers == "auto":
        return [p for p in PREFERRED_PROVIDERS if p in available]
    if providers == "cpu":
        return ["CPUExecutionProvider"]
    missing = [p for p in providers if p not in available]
    if missing:
        raise ValueError(f"execution provider(s) {missing} not in this onnxruntime build; available: {available}")
    return list(providers)


class OnnxModel(nn.Module):
    """Runs an exported ``.onnx`` graph (:func:`~mtl_ehrnet.inference.onnx_export.export_onnx`) like its model.

    It has no parameters; it lives on the CPU and hands its outputs back on the input's device.

    Args:
        graph: path of the ``.onnx`` file, or its bytes.
        tasks: the source model's tasks (``("pose", "seg")``...); default inferred from the outputs.
        config: the source model's ``ModelConfig`` (the evaluations read ``num_classes`` from it).
        input_size: the source model's native (H, W).
        threads: ONNX Runtime intra-op threads (default: its own choice).
        providers: see :func:`pick_providers`.

    Shape: images (B, 3, H, W) float32 -> dict of outputs named as in the graph, e.g. ``"heatmaps"``
        (B, K, H/2, W/2), ``"seg"`` (B, C, H/4, W/4); a graph exported for fixed B / H / W accepts only those.
    """

    def __init__(
        self,
        graph: Union[PathLike, bytes],
        *,
        tasks: Optional[Sequence[str]] = None,
        config: Any = None,
        input_size: Optional[Tuple[int, int]] = None,
        threads: Optional[int] = None,
        providers: Union[str, Sequence[str]] = "auto",
    ) -> None:
        super().__init__()
        import onnxruntime as ort

        source = graph if isinstance(graph, bytes) else str(graph)
        if not isinstance(graph, bytes) and not Path(graph).is_file():
            raise FileNotFoundError(f"ONNX file not found: {graph}")
        options = ort.SessionOptions()
        # Idle intra-op threads would otherwise spin after each run and take the cores from the grouping and
        # class map that follow it (measured: post-processing 1.6x slower on 2 cores, the forward no faster).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(source, options, providers=pick_providers(providers))
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_shape = self.session.get_inputs()[0].shape  # ints for fixed axes, strings for free ones
        self.threads = threads
        if tasks is None:
            tasks = tuple(t for t, key in (("pose", "heatmaps"), ("seg", "seg")) if key in self.output_names)
        self.tasks = tuple(tasks)
        self.config = config
        if input_size is None and all(isinstance(d, int) for d in self._input_shape[2:]):
            input_size = tuple(self._input_shape[2:])
        if input_size is not None:
            self.input_size = tuple(input_size)

    @property
    def providers(self) -> List[str]:
        """The execution providers the session really uses."""
        return self.session.get_providers()

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        for axis, (want, got) in enumerate(zip(self._input_shape, images.shape)):
            if isinstance(want, int) and want != got:
                raise ValueError(f"this ONNX graph takes images of shape {self._input_shape}, "
                                 f"got {tuple(images.shape)} (axis {axis}); export with dynamic_batch / dynamic_size "
                                 "to run other shapes")
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        results = self.session.run(self.output_names, {self.input_name: array})
        return {name: torch.from_numpy(value).to(images.device) for name, value in zip(self.output_names, results)}
