"""Deployment paths: a numeric precision and a backend that runs the network, which of them this machine
supports, and the one ``"auto"`` picks.

``auto`` decides from the machine's capabilities (:mod:`mtl_ehrnet.inference.machine`), not from a timing
taken at start-up (``Predictor(tune=True)`` times :func:`candidate_paths` instead,
:mod:`mtl_ehrnet.inference.path_tuning`); the rules encode what docs/results.md ("Inference paths") measured:

* CUDA device: fp16, through TensorRT when ONNX Runtime has its provider, else PyTorch autocast.
* CPU with AMX or AVX-512 BF16: bf16 autocast on channels-last PyTorch.
* any other CPU: fp32 on ONNX Runtime, or channels-last PyTorch without it.

INT8 needs calibration images and costs accuracy, so ``auto`` takes it only when asked to consider it
(``calibration=True``), on a CPU with int8 dot products (VNNI) but no AMX: there it runs ahead of bf16
autocast too (AVX-512 BF16 without AMX).
"""
from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from typing import List, Optional, Union

import torch

from mtl_ehrnet.inference.machine import Machine, this_machine

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
BACKENDS = ("torch", "torch.compile", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class DeploymentPath:
    """How the network runs.

    Attributes:
        precision: one of :data:`PRECISIONS` (bf16 / fp16 by autocast on the PyTorch backends).
        backend: one of :data:`BACKENDS`; ``"tensorrt"`` is ONNX Runtime's TensorRT provider.
        device: ``"cpu"`` or ``"cuda"``.
        channels_last: NHWC tensors on the PyTorch backends.
        fold_batchnorm: batch norms folded into the convolutions before them on the PyTorch backends
            (:mod:`mtl_ehrnet.inference.fold_batchnorm`; ONNX Runtime folds them itself).
    """

    precision: str
    backend: str
    device: str = "cpu"
    channels_last: bool = True
    fold_batchnorm: bool = True

    def __str__(self) -> str:
        layout = ""
        if self.backend.startswith("torch"):
            layout += ", channels-last" if self.channels_last else ""
            layout += "" if self.fold_batchnorm else ", batch norm unfolded"
        return f"{self.precision} {self.backend} on {self.device}{layout}"

    @property
    def name(self) -> str:
        """``precision:backend``, the form ``--paths`` takes."""
        return f"{self.precision}:{self.backend}"


def baseline_path(device: str = "cpu") -> DeploymentPath:
    """fp32 eager PyTorch as a plain model runs it (NCHW, batch norms apart): the path every speed-up is
    read against."""
    return DeploymentPath("fp32", "torch", device, channels_last=False, fold_batchnorm=False)


def missing_for(precision: str, backend: str, device: str, machine: Optional[Machine] = None) -> Optional[str]:
    """Why ``precision`` on ``backend`` cannot run on ``device`` here, or None when it can.

    Raises:
        ValueError: an unknown precision, backend or device.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)} or auto")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)} or auto")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    machine = machine or this_machine()
    if device == "cuda" and not machine.cuda:
        return "a CUDA device (torch.cuda.is_available() is False)"
    if backend in ("onnxruntime", "tensorrt") and importlib.util.find_spec("onnxruntime") is None:
        return "the onnxruntime package"
    if backend == "tensorrt":
        return _missing_for_tensorrt(precision, device)
    if backend == "torch.compile" and device == "cpu" and not (
            shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        return "a C++ compiler (torch.compile's CPU code generator needs one)"
    if precision == "fp16" and device != "cuda":
        return "a CUDA device (fp16 convolutions on a CPU are emulated and slow)"
    if precision == "bf16":
        if backend == "onnxruntime":
            return "bf16 convolutions in ONNX Runtime's CPU and CUDA providers (use the torch backend)"
        if device == "cpu" and not machine.fast_bf16:
            return ("a CPU with AMX or AVX-512 BF16 (flags amx_bf16 / avx512_bf16; without them bf16 is slower "
                    "than fp32)")
        if device == "cuda" and not torch.cuda.is_bf16_supported():
            return "a CUDA device with bf16 (compute capability 8.0 or newer)"
    if precision == "int8":
        if backend != "onnxruntime":
            return "an INT8 path on this backend (INT8 runs as ONNX Runtime static quantisation: --backend onnxruntime)"
        if device != "cpu":
            return "an INT8 path on CUDA here (INT8 is the CPU's; on a GPU use fp16)"
    if precision == "fp16" and backend == "onnxruntime":
        return "an fp16 graph for ONNX Runtime here (use --backend tensorrt or torch)"
    return None


def _missing_for_tensorrt(precision: str, device: str) -> Optional[str]:
    import onnxruntime as ort

    if device != "cuda":
        return "a CUDA device (TensorRT runs on NVIDIA GPUs)"
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return "ONNX Runtime's TensorrtExecutionProvider (install onnxruntime-gpu and TensorRT)"
    if precision not in ("fp32", "fp16"):
        return f"{precision} on TensorRT here (offered: fp32, fp16)"
    return None


def available_paths(device: str, machine: Optional[Machine] = None) -> List[DeploymentPath]:
    """Every path that runs on ``device`` here, fp32 eager PyTorch first."""
    machine = machine or this_machine()
    return [DeploymentPath(p, b, device) for b in BACKENDS for p in PRECISIONS
            if missing_for(p, b, device, machine) is None]


def choose_path(precision: str = "auto", backend: str = "auto", device: Union[str, torch.device, None] = None, *,
                machine: Optional[Machine] = None, calibration: bool = False,
                channels_last: Optional[bool] = None, fold_batchnorm: bool = True) -> DeploymentPath:
    """The path to run: ``precision`` and ``backend`` as given, ``"auto"`` filled in from the machine.

    Args:
        precision: one of :data:`PRECISIONS` or ``"auto"``.
        backend: one of :data:`BACKENDS` or ``"auto"``.
        device: ``"cpu"``, ``"cuda"`` (default: CUDA when available).
        machine: the facts to decide on (default this machine's).
        calibration: calibration images are at hand, so ``auto`` may take INT8 (see the module doc).
        channels_last: NHWC on the PyTorch backends (default True: faster on both CPU and GPU for these
            convolutional models, docs/results.md).
        fold_batchnorm: fold batch norms into convolutions on the PyTorch backends (default True: the same
            outputs up to float rounding, one pass less over every activation).

    Raises:
        ValueError: the path, or the only paths ``auto`` could fill in, cannot run here; the message names
            what is missing.
    """
    machine = machine or this_machine()
    device = torch.device(device).type if device is not None else ("cuda" if machine.cuda else "cpu")
    runnable = candidate_paths(precision, backend, device, machine=machine, calibration=calibration,
                               channels_last=channels_last, fold_batchnorm=fold_batchnorm)
    if runnable:
        return runnable[0]
    if precision != "auto" and backend != "auto":
        raise ValueError(f"{precision} on {backend} ({device}) needs "
                         f"{missing_for(precision, backend, device, machine)}; this machine: {machine.describe()}")
    reasons = "; ".join(f"{p}:{b} needs {missing_for(p, b, device, machine)}"
                        for p, b in _candidates(precision, backend, device, machine, calibration))
    raise ValueError(f"no path for precision {precision}, backend {backend} on {device}: {reasons}")


def candidate_paths(precision: str = "auto", backend: str = "auto", device: str = "cpu", *,
                    machine: Optional[Machine] = None, calibration: bool = False,
                    channels_last: Optional[bool] = None, fold_batchnorm: bool = True) -> List[DeploymentPath]:
    """Every path that ``precision`` and ``backend`` (either may be ``"auto"``) allow and that runs on ``device``
    here, in ``auto``'s order of preference (the first is :func:`choose_path`'s); empty when none runs.
    Arguments as for :func:`choose_path`, ``device`` a device type."""
    machine = machine or this_machine()
    layout = True if channels_last is None else channels_last
    paths: List[DeploymentPath] = []
    for p, b in _candidates(precision, backend, device, machine, calibration):
        path = DeploymentPath(p, b, device, layout, fold_batchnorm)
        if path not in paths and missing_for(p, b, device, machine) is None:
            paths.append(path)
    return paths


def _candidates(precision: str, backend: str, device: str, machine: Machine, calibration: bool) -> List[tuple]:
    """(precision, backend) pairs to try in order of preference."""
    if device == "cuda":
        order = [("fp16", "tensorrt"), ("fp16", "torch"), ("bf16", "torch"), ("fp32", "tensorrt"), ("fp32", "torch")]
    else:
        # With AMX, bf16 matrix tiles beat int8 on ONNX Runtime; with VNNI alone, int8 beats bf16 autocast
        # (docs/results.md, "Inference paths").
        int8_first = calibration and machine.vnni and not machine.amx
        order = [("int8", "onnxruntime")] if int8_first else []
        order += [("bf16", "torch")] if machine.fast_bf16 else []
        order += [("fp32", "onnxruntime"), ("fp32", "torch")]
    if precision == "auto" and backend == "auto":
        return order
    if precision == "auto":
        return [pair for pair in order if pair[1] == backend] + [(p, backend) for p in ("fp32",)]
    if backend == "auto":
        return [pair for pair in order if pair[0] == precision] + [(precision, b) for b in BACKENDS]
    return [(precision, backend)]
