"""Plots written by the library: training curves from a run's ``log.jsonl``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from mtl_ehrnet.training.metric_log import read_log


def metric_series(vals: List[Dict[str, Any]]) -> Dict[str, List[Optional[float]]]:
    """Each validation metric of the log's ``val`` records, by epoch; COCOeval's -1 (an area range with no
    objects, e.g. APL on small people) becomes a gap, and a metric that is never defined is left out."""
    series = {}
    for metric in [k for k in (vals[-1] if vals else {}) if k not in ("kind", "epoch", "step")]:
        values = [None if r.get(metric) == -1 else r.get(metric) for r in vals]
        if any(v is not None for v in values):
            series[metric] = values
    return series


def plot_training_log(log_path: Union[str, Path], out_png: Union[str, Path]) -> Path:
    """Loss per epoch (left) and validation metrics per epoch (right) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = read_log(Path(log_path), "epoch")
    vals = read_log(Path(log_path), "val")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if epochs:
        terms = [k for k in epochs[-1] if k not in ("kind", "epoch", "step", "seconds", "lr", "images_per_s")]
        for term in terms:
            left.plot([r["epoch"] for r in epochs], [r.get(term) for r in epochs], label=term, marker=".")
        left.set_yscale("log")
    left.set(title="training loss per epoch", xlabel="epoch")
    left.legend(fontsize=7)
    for metric, values in metric_series(vals).items():
        right.plot([r["epoch"] for r in vals], values, label=metric, marker="o")
    right.set(title="validation", xlabel="epoch")
    if vals:
        right.legend(fontsize=7)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
