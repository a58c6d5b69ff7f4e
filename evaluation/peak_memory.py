"""Peak memory of one deployment path over one inference (forward pass and post-processing).

* CPU: how far the resident set of a fresh process grows, from before the network exists to the peak of the
  inference. The process is spawned for the measurement so that nothing else it ran counts, and it loads
  the network as a deployment would: a PyTorch model from its name or checkpoint, or an ONNX Runtime
  session from the graph file. The growth holds the weights, the runtime's buffers and the largest set of
  activations alive at once. One inference runs before the measured one, as in a serving process; what
  building the network and that first call needed and freed (export, quantisation, checkpoint loading,
  compilation) is left out where the kernel can reset the peak (Linux's ``/proc/self/clear_refs``).
* CUDA: ``torch.cuda.max_memory_allocated`` over the inference, weights included.
"""
from __future__ import annotations

import gc
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class NetworkSource:
    """What the measuring process loads.

    Attributes:
        spec: a registered model name (random weights) or a checkpoint file, for the PyTorch backends.
        backbone: the trunk to build ``spec`` on (``benchmark --backbones``), None for the model's own.
        graph: the exported (and, for INT8, quantised) ``.onnx`` file, for the ONNX Runtime backends.
    """

    spec: str
    backbone: Optional[str] = None
    graph: Optional[str] = None


def cpu_peak_growth_mb(source: NetworkSource, path: Any, size: Tuple[int, int],
                       threads: Optional[int] = None) -> Optional[float]:
    """Peak resident-set growth (MiB) of a fresh process that loads ``source`` and runs one inference on
    ``path`` at ``size`` (batch 1); None where the operating system reports no resident set (Windows).

    Args:
        source: the network to load (the graph file for ONNX Runtime paths).
        path: a :class:`mtl_ehrnet.inference.deployment.DeploymentPath` on the CPU.
        size: (H, W) of the input.
        threads: intra-op threads of the runtime (default torch's).
    """
    if path.device != "cpu":
        raise ValueError(f"cpu_peak_growth_mb measures CPU paths; {path.name} runs on {path.device}")
    if path.backend in ("onnxruntime", "tensorrt") and source.graph is None:
        raise ValueError(f"{path.name} runs an ONNX graph: give NetworkSource(graph=...)")
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_measure_in_this_process, source, path, tuple(size), threads).result()


def cuda_peak_mb(runner: Callable[[torch.Tensor], Dict[str, torch.Tensor]], size: Tuple[int, int],
                 postprocess: Optional[Callable[[Dict[str, Any]], Any]] = None) -> float:
    """``torch.cuda.max_memory_allocated`` (MiB) over one inference of ``runner`` (batch 1), weights included."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        outputs = runner(torch.randn(1, 3, *size, device="cuda"))
        if postprocess is not None:
            postprocess(outputs)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def _measure_in_this_process(source: NetworkSource, path: Any, size: Tuple[int, int],
                             threads: Optional[int]) -> Optional[float]:
    """The body of :func:`cpu_peak_growth_mb`, run in the spawned process."""
    from evaluation.latency import postprocess_for
    from evaluation.model_source import load_model_or_name
    from mtl_ehrnet import create_model
    from mtl_ehrnet.inference.runners import build_runner, providers_for

    if threads:
        torch.set_num_threads(threads)
    onnx = source.graph is not None
    if onnx:
        from mtl_ehrnet.inference.onnx_runtime import OnnxModel
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    _return_freed_memory()
    before = _resident_kib()
    if before is None:
        return None
    if onnx:
        runner = OnnxModel(source.graph, threads=threads or torch.get_num_threads(), providers=providers_for(path))
    else:
        model = (create_model(source.spec, backbone=source.backbone) if source.backbone
                 else load_model_or_name(source.spec, "cpu").model)
        runner = build_runner(model, path, size, threads=threads)
        del model
    post = postprocess_for(runner)
    with torch.inference_mode():
        # One untimed inference first: what a serving process holds after its first image (compiled code,
        # the runtime's arenas) counts through the resident set, the first call's transients do not.
        post(runner(images))
        _return_freed_memory()
        reset = _reset_peak()
        post(runner(images))
    peak = _peak_kib() if reset else _lifetime_peak_kib()
    return max(peak - before, 0) / 1024


def _status_kib(field: str) -> Optional[int]:
    if not _STATUS.is_file():
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else None


def _resident_kib() -> Optional[int]:
    now = _status_kib("VmRSS")
    if now is not None:
        return now
    return _lifetime_peak_kib()  # without /proc: the peak so far, which is the fresh process's size


def _peak_kib() -> int:
    return _status_kib("VmHWM")


def _lifetime_peak_kib() -> Optional[int]:
    try:
        import resource
    except ImportError:  # Windows
        return None
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def _reset_peak() -> bool:
    """Resets the kernel's peak resident set to the current one (Linux); False where it cannot."""
    if _status_kib("VmHWM") is None:
        return False
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _return_freed_memory() -> None:
    """Collects garbage and hands freed heap pages back to the kernel (glibc), so that memory freed while
    building is not counted as the network's."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
