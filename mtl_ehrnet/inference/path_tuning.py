"""The fastest deployment path for one model at one input size on this machine, by timing the candidates.

``auto``'s rules (:mod:`mtl_ehrnet.inference.deployment`) rank paths from the CPU's flags, which holds for
networks large enough for their arithmetic to dominate. A small network at a small input is another matter:
there the per-layer cost of eager PyTorch outweighs what bf16 saves, and a graph runtime wins (the quick-start
student at 128 on an AVX-512 BF16 CPU, docs/results.md "Inference paths"). Timing every candidate on the model
itself settles it, at the price of building each one (an ONNX export, an INT8 calibration) before the first
image.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from mtl_ehrnet.inference.deployment import DeploymentPath
from mtl_ehrnet.inference.runners import runner_keeping_model


@dataclass
class TunedPath:
    """The fastest candidate and what every candidate took.

    Attributes:
        path: the fastest path.
        runner: its network callable (:func:`mtl_ehrnet.inference.runners.build_runner`).
        seconds: median seconds of one forward pass per candidate, keyed by ``str(path)``, fastest first.
    """

    path: DeploymentPath
    runner: nn.Module
    seconds: Dict[str, float]


def fastest_path(model: nn.Module, paths: Sequence[DeploymentPath], input_hw: Sequence[int], *,
                 calibration: Optional[Sequence[np.ndarray]] = None, rounds: int = 5, warmup: int = 2,
                 batch_size: int = 1) -> TunedPath:
    """Builds a runner per path and keeps the one whose forward pass is fastest.

    The candidates run in interleaved rounds (A B C A B C ...) on one random normalised batch, so that a load
    that comes and goes shifts them alike; each one's median over ``rounds`` decides.

    Args:
        model: the network (eval mode); left as it is: PyTorch paths fold a copy.
        paths: the candidates, e.g. :func:`mtl_ehrnet.inference.deployment.candidate_paths`.
        input_hw: (H, W), multiples of 32, of the timed batch (and of an ONNX export).
        calibration: normalised float32 batches (1, 3, H, W) for an INT8 candidate.
        rounds, warmup: timed and untimed rounds.
        batch_size: images in the timed batch.

    Raises:
        ValueError: no candidate, or rounds < 1.
    """
    if not paths:
        raise ValueError("fastest_path needs at least one candidate path")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got {rounds} and {warmup}")
    runners = {path: runner_keeping_model(model, path, tuple(input_hw), calibration) for path in paths}
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, *input_hw, generator=generator)
    times: Dict[DeploymentPath, list] = {path: [] for path in paths}
    with torch.inference_mode():
        for round_ in range(warmup + rounds):
            for path, runner in runners.items():
                batch = images.to(path.device)
                start = time.perf_counter()
                runner(batch)
                if path.device == "cuda":
                    torch.cuda.synchronize()
                if round_ >= warmup:
                    times[path].append(time.perf_counter() - start)
    medians = sorted(((statistics.median(t), path) for path, t in times.items()), key=lambda pair: pair[0])
    best = medians[0][1]
    return TunedPath(best, runners[best], {str(path): seconds for seconds, path in medians})
