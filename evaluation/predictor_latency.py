"""End-to-end latency through :class:`~mtl_ehrnet.inference.Predictor`: resize, normalise, the network on a
deployment path, grouping and the full-resolution class map, per image; with the network's share timed
apart, so that what the network costs and what surrounds it can be read side by side."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from evaluation.latency import Timing


@dataclass(frozen=True)
class PredictorTiming:
    """Per-image latency of one model on one path.

    Attributes:
        model: the model's name or checkpoint.
        tasks: its tasks (``("pose", "seg")``...).
        path: the deployment path, as ``str(DeploymentPath)``.
        total: the whole ``Predictor`` call, per image.
        network: the network alone (``Predictor``'s runner), per image.
    """

    model: str
    tasks: tuple
    path: str
    total: Timing
    network: Timing

    @property
    def around_network_ms(self) -> float:
        """Pre- and post-processing: the median total less the median network time."""
        return self.total.median_ms - self.network.median_ms


class _TimedRunner:
    """Wraps a runner and adds up the seconds spent in it."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.seconds = 0.0

    def __call__(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        start = time.perf_counter()
        outputs = self.runner(images)
        if images.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return outputs


def time_predictors(models: Sequence[str], paths: Sequence[Any], images: Sequence[np.ndarray], *,
                    input_size: Optional[int] = None, runs: int = 5, warmup: int = 1,
                    threads: Optional[int] = None, device: str = "cpu") -> List[PredictorTiming]:
    """Times ``Predictor(model, precision=..., backend=...)`` on each image, every model on every path, in
    rounds (one pass over the images per model and path each round: A B A B ...) so that a load that
    changes over the measurement shifts them alike.

    Args:
        models: registered names (random weights) or checkpoint files.
        paths: :class:`~mtl_ehrnet.inference.deployment.DeploymentPath` s; INT8 calibrates on ``images``.
        images: uint8 RGB (H, W, 3), any sizes.
        input_size: the network's short side (default each model's own).
        runs: timed rounds; the medians are over them, of each round's mean per image.
        warmup: untimed rounds first.
        threads: torch CPU threads (default unchanged).
    """
    from evaluation.model_source import load_model_or_name
    from mtl_ehrnet.inference import Predictor

    if not images:
        raise ValueError("time_predictors needs at least one image")
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got {runs} and {warmup}")
    if threads:
        torch.set_num_threads(threads)
    entries = []
    for spec in models:
        model = load_model_or_name(spec, device).model
        for path in paths:
            predictor = Predictor(model, input_size=input_size, precision=path.precision, backend=path.backend,
                                  device=path.device, channels_last=path.channels_last,
                                  fold_batchnorm=path.fold_batchnorm,
                                  calibration=list(images) if path.precision == "int8" else None)
            timed = _TimedRunner(predictor._network)
            predictor._network = timed
            entries.append((spec, tuple(model.tasks), predictor, timed))
    totals: List[List[float]] = [[] for _ in entries]
    networks: List[List[float]] = [[] for _ in entries]
    for round_ in range(warmup + runs):
        for (_, _, predictor, timed), total, network in zip(entries, totals, networks):
            timed.seconds = 0.0
            start = time.perf_counter()
            for image in images:
                predictor(image)
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                total.append(elapsed / len(images))
                network.append(timed.seconds / len(images))
    return [PredictorTiming(spec, tasks, str(predictor.path), Timing.of(total), Timing.of(network))
            for (spec, tasks, predictor, _), total, network in zip(entries, totals, networks)]


def joint_against_separate(rows: Sequence[PredictorTiming]) -> Dict[str, float]:
    """Per path: the joint model's total over the pose-only plus the seg-only model's, where the rows hold
    one of each (the first of each kind)."""
    ratios = {}
    for path in dict.fromkeys(r.path for r in rows):
        kinds: Dict[tuple, PredictorTiming] = {}
        for r in rows:
            if r.path == path:
                kinds.setdefault(tuple(sorted(r.tasks)), r)
        joint, pose, seg = kinds.get(("pose", "seg")), kinds.get(("pose",)), kinds.get(("seg",))
        if joint and pose and seg:
            ratios[path] = joint.total.median_ms / (pose.total.median_ms + seg.total.median_ms)
    return ratios


def format_timings(rows: Sequence[PredictorTiming]) -> str:
    """A markdown table (ratios against the first row) and the joint-against-separate ratio per path."""
    base = rows[0].total.median_ms
    lines = [
        f"Predictor end to end, per image, median (p10-p90) of {rows[0].total.runs} rounds",
        "| model | path | end to end | network | around the network | around / network | vs first row |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r.total
        lines.append(
            f"| {r.model} | {r.path} | {t.median_ms:.1f} ms ({t.p10_ms:.1f}-{t.p90_ms:.1f}) | "
            f"{r.network.median_ms:.1f} ms | {r.around_network_ms:.1f} ms | "
            f"{r.around_network_ms / r.network.median_ms:.2f} | {t.median_ms / base:.2f} |"
        )
    ratios = joint_against_separate(rows)
    if ratios:
        lines.append("")
        lines += [f"joint / (pose + seg), {path}: {ratio:.2f}" for path, ratio in ratios.items()]
    return "\n".join(lines)
