"""Wall-clock latency of a model's forward pass and of its post-processing, measured separately."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Timing:
    """Summary of repeated timings, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    runs: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> "Timing":
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(float(np.median(ms)), float(np.percentile(ms, 10)), float(np.percentile(ms, 90)), float(ms.mean()),
                   len(ms))

    def __str__(self) -> str:
        return f"{self.median_ms:.1f} ms (p10 {self.p10_ms:.1f}, p90 {self.p90_ms:.1f}, n={self.runs})"


@dataclass(frozen=True)
class LatencyReport:
    """Forward and post-processing latency of one configuration.

    ``total`` sums the two medians; ``fps`` = batch / total median.
    """

    forward: Timing
    postprocess: Optional[Timing]
    batch_size: int
    input_size: tuple
    device: str
    threads: int

    @property
    def total_ms(self) -> float:
        return self.forward.median_ms + (self.postprocess.median_ms if self.postprocess else 0.0)

    @property
    def fps(self) -> float:
        return 1e3 * self.batch_size / self.total_ms

    def as_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.update(total_ms=self.total_ms, fps=self.fps)
        return out


def measure_latency(
    model: nn.Module,
    input_size: Union[int, Sequence[int]],
    *,
    batch_size: int = 1,
    device: Union[str, torch.device, None] = None,
    warmup: int = 3,
    runs: int = 10,
    threads: Optional[int] = None,
    postprocess: Optional[Callable[[Dict[str, torch.Tensor]], Any]] = None,
) -> LatencyReport:
    """Times ``model`` on random images, and ``postprocess`` on its outputs, separately.

    Runs under ``torch.inference_mode`` with the model in eval mode; on CUDA every timed region ends
    with ``torch.cuda.synchronize`` so that asynchronous kernels are counted.

    Args:
        model: the network; moved to ``device``.
        input_size: (H, W) or one side.
        batch_size: images per forward pass.
        device: default: where the model's parameters are.
        warmup: untimed runs first (allocator, cuDNN autotuning, lazy init).
        runs: timed runs; the report gives median, p10, p90 and mean.
        threads: CPU intra-op threads for the measurement (restored afterwards); default unchanged.
        postprocess: called with the model's output after each forward pass (e.g. grouping); timed
            on its own.

    Returns:
        A ``LatencyReport`` stating the device and thread count it was measured with.

    Raises:
        ValueError: ``runs`` < 1.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval().to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    images = torch.randn(batch_size, 3, height, width, device=device)
    forward_s, post_s = [], []
    try:
        with torch.inference_mode():
            for i in range(warmup + runs):
                sync()
                start = time.perf_counter()
                outputs = model(images)
                sync()
                middle = time.perf_counter()
                if postprocess is not None:
                    postprocess(outputs)
                    sync()
                end = time.perf_counter()
                if i >= warmup:
                    forward_s.append(middle - start)
                    post_s.append(end - middle)
    finally:
        model.train(was_training)
        torch.set_num_threads(previous_threads)
    return LatencyReport(
        forward=Timing.of(forward_s),
        postprocess=Timing.of(post_s) if postprocess is not None else None,
        batch_size=batch_size,
        input_size=(height, width),
        device=str(device),
        threads=threads if threads is not None else previous_threads,
    )


def postprocess_for(model: Any) -> Callable[[Dict[str, Any]], Any]:
    """What follows the forward pass at inference: grouping of the first image and/or its class map."""
    from mtl_ehrnet.inference import group_poses
    from mtl_ehrnet.inference.class_map import upsampled_argmax
    from mtl_ehrnet.inference.predictor import pose_maps

    def post(outputs: Dict[str, Any]) -> None:
        if "heatmaps" in outputs:
            heat, tags = pose_maps(outputs)
            group_poses(heat[0], tags[0])
        if "seg" in outputs:
            seg = outputs["seg"][0]
            upsampled_argmax(seg, (seg.shape[-2] * 4, seg.shape[-1] * 4), (0.25, 0.25))

    return post
