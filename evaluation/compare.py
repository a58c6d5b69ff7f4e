"""Joint versus separate: accuracy, parameters, MACs and latency of teachers and students in one table.

Rows (names are a contract): ``pose_teacher``, ``seg_teacher``, ``pose_student_gt``, ``seg_student_gt``,
``joint_student_gt``, ``joint_student_kd``. AP and mIoU are measured on one split labelled for both tasks
(``synth``'s ``joint/``), so every row is scored on the same images; a metric a row cannot have is None.
"""
from __future__ import annotations

import copy
import json
import math
import statistics
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from torch import nn

from evaluation.complexity import complexity
from evaluation.dataset_eval import evaluate_joint
from evaluation.latency import measure_latency
from mtl_ehrnet.checkpoint import read_checkpoint
from mtl_ehrnet.factory import load_model
from mtl_ehrnet.inference.deployment import DeploymentPath
from mtl_ehrnet.inference.quantize import calibration_batches
from mtl_ehrnet.inference.runners import build_runner

ROW_NAMES = ("pose_teacher", "seg_teacher", "pose_student_gt", "seg_student_gt", "joint_student_gt", "joint_student_kd")
PathLike = Union[str, Path]


def compare_rows(
    checkpoints: Mapping[str, PathLike], joint_root: PathLike, *, latency_runs: int = 5, threads: Optional[int] = None,
    path: Optional[DeploymentPath] = None, calibration: Optional[Sequence[np.ndarray]] = None,
) -> List[Dict[str, object]]:
    """Measures every given checkpoint (a subset of ``ROW_NAMES``) in one run.

    Rows that name the same file (the quick start's pose teacher is also its separate pose student) are
    scored and timed once and share the figures; the later row's ``same_as`` names the first.

    Latency: batch 1 at the model's native input, ``inference_mode``, on the CPU with ``threads`` threads
    (default: torch's current setting); the median of ``latency_runs`` rounds over all models
    (:func:`latencies_in_rounds`). ``path`` is the deployment path every model is timed on
    (:func:`mtl_ehrnet.inference.deployment.choose_path`; default fp32 PyTorch eager, NCHW), recorded in
    each row's ``latency_path``; an INT8 path calibrates on ``calibration`` (uint8 RGB images).
    """
    unknown = sorted(set(checkpoints) - set(ROW_NAMES))
    if unknown:
        raise ValueError(f"unknown comparison rows {unknown}; expected names from {list(ROW_NAMES)}")
    rows: List[Dict[str, object]] = []
    models: Dict[str, Tuple[nn.Module, Tuple[int, int]]] = {}
    first_row: Dict[Path, Dict[str, object]] = {}
    for name in ROW_NAMES:
        if name not in checkpoints:
            continue
        key = Path(checkpoints[name]).resolve()
        if key in first_row:
            rows.append(
                {
                    **first_row[key],
                    "name": name,
                    "same_as": first_row[key]["name"],
                    "checkpoint": str(checkpoints[name]),
                }
            )
            continue
        model: nn.Module = load_model(checkpoints[name]).requires_grad_(False)  # eval mode, any kind of model
        size = tuple(model.input_size)
        metrics = evaluate_joint(model, joint_root)
        counts = complexity(model, size)
        models[name] = (model if path is None else _runner(model, path, size, calibration, threads), size)
        first_row[key] = {
            "name": name,
            "tasks": list(model.tasks),
            "input_size": list(size),
            "ap": metrics["AP"],
            "miou": metrics["mIoU"],
            "params": counts["params"],
            "macs": counts["macs"],
            "latency_ms": None,
            "latency_path": "fp32 torch eager" if path is None else str(path),
            "checkpoint": str(checkpoints[name]),
            **training_record(checkpoints[name]),
        }
        rows.append(first_row[key])
    latency = latencies_in_rounds(models, latency_runs, threads)
    for row in rows:
        row["latency_ms"] = latency[str(row.get("same_as", row["name"]))]
    return rows


def training_record(path: PathLike) -> Dict[str, Optional[int]]:
    """The seed and the steps a checkpoint's weights were trained with: from the checkpoint, or from the
    ``last.pt`` beside a weights-only one (``student.pt``); None where neither says."""
    state = read_checkpoint(path)
    if "global_step" not in state and (Path(path).parent / "last.pt").is_file():
        state = read_checkpoint(Path(path).parent / "last.pt")
    seed = (state.get("run_config") or {}).get("seed")
    return {"seed": seed, "steps": state.get("global_step")}


def _runner(model: nn.Module, path: DeploymentPath, size: Tuple[int, int],
            calibration: Optional[Sequence[np.ndarray]], threads: Optional[int]) -> nn.Module:
    """``model`` on ``path`` (a copy: the scored model stays as it is), on the CPU."""
    if path.device != "cpu":
        raise ValueError(f"compare times models on the CPU, not on {path.device}")
    batches = None
    if path.precision == "int8":
        if not calibration:
            raise ValueError("an INT8 path needs calibration images (--calibration ROOT)")
        batches = list(calibration_batches(calibration, size))
    return build_runner(copy.deepcopy(model), path, size, batches, threads)


def latencies_in_rounds(
    models: Mapping[str, Tuple[nn.Module, Tuple[int, int]]], rounds: int, threads: Optional[int] = None
) -> Dict[str, float]:
    """Median CPU forward latency (ms) of each model over ``rounds`` rounds of one untimed and one timed
    forward pass per model.

    Timed one model after the other, a passing load on the machine lands on one row: a quick start's joint
    students (0.25 GMACs) once came out slower than its teachers (0.36-0.38 GMACs). The untimed pass
    re-warms what the other models' passes evicted.
    """
    if rounds < 1:
        raise ValueError(f"latency rounds must be >= 1, got {rounds}")
    samples: Dict[str, List[float]] = {name: [] for name in models}
    for round_ in range(rounds):
        for name, (model, size) in models.items():
            report = measure_latency(model, size, device="cpu", warmup=2 if round_ == 0 else 1, runs=1, threads=threads)
            samples[name].append(report.forward.median_ms)
    return {name: statistics.median(values) for name, values in samples.items()}


def savings(rows: List[Dict[str, object]]) -> Dict[str, Optional[float]]:
    """The joint students' params, MACs and latency as fractions of the two separate students together."""
    by = {r["name"]: r for r in rows}
    out: Dict[str, Optional[float]] = {}
    if "pose_student_gt" in by and "seg_student_gt" in by:
        for joint in ("joint_student_kd", "joint_student_gt"):
            if joint in by:
                for key in ("params", "macs", "latency_ms"):
                    separate = float(by["pose_student_gt"][key]) + float(by["seg_student_gt"][key])  # type: ignore[arg-type]
                    out[f"{key}_ratio"] = float(by[joint][key]) / separate  # type: ignore[arg-type]
                break
    if "joint_student_kd" in by and "pose_teacher" in by and "seg_teacher" in by:
        teachers = float(by["pose_teacher"]["macs"]) + float(by["seg_teacher"]["macs"])  # type: ignore[arg-type]
        out["macs_vs_teachers"] = float(by["joint_student_kd"]["macs"]) / teachers  # type: ignore[arg-type]
    return out


def _fmt(value: object, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value) / scale:.{digits}f}{unit}"  # type: ignore[arg-type]


def _plain(value: object) -> str:
    return "-" if value is None else str(value)


def markdown(rows: List[Dict[str, object]], saving: Dict[str, Optional[float]]) -> str:
    paths = sorted({str(r["latency_path"]) for r in rows if r.get("latency_path")})
    latency = f"CPU latency ({', '.join(paths)})" if paths else "CPU latency"
    lines = [f"| row | tasks | input | seed | steps | AP | mIoU | params | MACs | {latency} |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        h, w = r["input_size"]  # type: ignore[misc]
        lines.append(
            f"| {r['name']}{' (= ' + str(r['same_as']) + ')' if r.get('same_as') else ''} | "
            f"{'+'.join(r['tasks'])} | {h}x{w} | {_plain(r.get('seed'))} | {_plain(r.get('steps'))} | "  # type: ignore[arg-type]
            f"{_fmt(r['ap'])} | {_fmt(r['miou'])} | "
            f"{_fmt(r['params'], 1e6, 2, ' M')} | {_fmt(r['macs'], 1e9, 2, ' G')} | "
            f"{_fmt(r['latency_ms'], 1, 1, ' ms')} |"
        )
    if saving:
        lines.append("")
        lines.append(
            "Joint student against the two separate students together: "
            + ", ".join(
                f"{k.replace('_ratio', '')} x{v:.3f}"
                for k, v in saving.items()
                if k.endswith("_ratio") and v is not None
            )
        )
        if saving.get("macs_vs_teachers") is not None:
            lines.append(f"Distilled student MACs / both teachers' MACs: {saving['macs_vs_teachers']:.3f}")
    return "\n".join(lines)


def point_labels(rows: List[Dict[str, object]]) -> Dict[str, str]:
    """The plot's label per point: a row that shares another's checkpoint is that point, named beside it."""
    return {
        str(r["name"]): " = ".join([str(r["name"])] + [str(o["name"]) for o in rows if o.get("same_as") == r["name"]])
        for r in rows
        if not r.get("same_as")
    }


def plot(rows: List[Dict[str, object]], out_png: Path) -> Path:
    """Accuracy against MACs, one point per row and metric (the shape of thesis figure 1.2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = point_labels(rows)
    for metric, marker in (("ap", "o"), ("miou", "s")):
        for r in rows:
            if r[metric] is not None and str(r["name"]) in names:
                ax.scatter(float(r["macs"]) / 1e9, float(r[metric]), marker=marker, s=50)  # type: ignore[arg-type]
                ax.annotate(
                    f"{names[str(r['name'])]} ({'AP' if metric == 'ap' else 'mIoU'})",
                    (float(r["macs"]) / 1e9, float(r[metric])),  # type: ignore[arg-type]
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
    ax.set(
        xlabel="GMACs (true count, native input)",
        ylabel="AP (o) / mIoU (s) on the joint val split",
        title="Joint versus separate",
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def write_comparison(rows: List[Dict[str, object]], out: PathLike) -> Dict[str, Path]:
    """Writes ``compare.json`` (the rows), ``compare.md`` and ``compare.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saving = savings(rows)
    (out / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "savings.json").write_text(json.dumps(saving, indent=2) + "\n")
    (out / "compare.md").write_text(markdown(rows, saving) + "\n")
    return {"json": out / "compare.json", "markdown": out / "compare.md", "plot": plot(rows, out / "compare.png")}


def seed_spread(per_seed: Mapping[int, List[Dict[str, object]]]) -> List[Dict[str, object]]:
    """Each row's AP and mIoU over several seeds' comparisons: mean, min, max and population standard deviation,
    with the seeds and each seed's steps.

    Args:
        per_seed: ``{seed: compare_rows(...)}``.
    """
    names = [name for name in ROW_NAMES if any(r["name"] == name for rows in per_seed.values() for r in rows)]
    spread: List[Dict[str, object]] = []
    for name in names:
        found = {seed: next(r for r in rows if r["name"] == name) for seed, rows in per_seed.items()
                 if any(r["name"] == name for r in rows)}
        steps = [r.get("steps") for r in found.values()]
        entry: Dict[str, object] = {"name": name, "seeds": list(found), "steps": steps}
        for key in ("ap", "miou"):
            values = [float(r[key]) for r in found.values() if r.get(key) is not None]  # type: ignore[arg-type]
            entry[key] = None if not values else {
                "mean": statistics.fmean(values), "min": min(values), "max": max(values),
                "std": statistics.pstdev(values), "per_seed": values,
            }
        spread.append(entry)
    return spread


def distillation_margins(per_seed: Mapping[int, List[Dict[str, object]]]) -> Dict[int, Dict[str, Optional[float]]]:
    """Per seed: the distilled joint student's AP and mIoU minus the ground-truth joint student's, and its share
    of each teacher's."""
    margins: Dict[int, Dict[str, Optional[float]]] = {}
    for seed, rows in per_seed.items():
        by = {r["name"]: r for r in rows}
        kd, gt = by.get("joint_student_kd"), by.get("joint_student_gt")
        entry: Dict[str, Optional[float]] = {}
        for key, teacher in (("ap", "pose_teacher"), ("miou", "seg_teacher")):
            value = None if kd is None else kd.get(key)
            base = None if gt is None else gt.get(key)
            reference = by.get(teacher, {}).get(key)
            entry[f"{key}_vs_gt"] = None if value is None or base is None else float(value) - float(base)  # type: ignore[arg-type]
            entry[f"{key}_of_teacher"] = (
                None if value is None or not reference else float(value) / float(reference)  # type: ignore[arg-type]
            )
        margins[seed] = entry
    return margins


def seed_markdown(spread: List[Dict[str, object]], margins: Mapping[int, Dict[str, Optional[float]]]) -> str:
    """The spread table, then the distilled student's margins per seed."""
    def cell(stats: object) -> str:
        if not stats:
            return "-"
        return f"{stats['mean']:.3f} ({stats['min']:.3f}-{stats['max']:.3f})"  # type: ignore[index]

    lines = ["| row | seeds | steps | AP mean (min-max) | mIoU mean (min-max) |", "|---|---|---|---|---|"]
    for entry in spread:
        seeds = ", ".join(str(s) for s in entry["seeds"])  # type: ignore[attr-defined]
        steps = ", ".join(_plain(s) for s in entry["steps"])  # type: ignore[attr-defined]
        lines.append(f"| {entry['name']} | {seeds} | {steps} | {cell(entry['ap'])} | {cell(entry['miou'])} |")
    lines += ["", "| seed | distilled - ground truth AP | mIoU | of pose teacher's AP | of seg teacher's mIoU |",
              "|---|---|---|---|---|"]
    for seed, m in margins.items():
        lines.append(f"| {seed} | {_fmt(m['ap_vs_gt'], digits=3)} | {_fmt(m['miou_vs_gt'], digits=3)} | "
                     f"{_fmt(m['ap_of_teacher'], 0.01, 1, ' %')} | {_fmt(m['miou_of_teacher'], 0.01, 1, ' %')} |")
    return "\n".join(lines)


def write_seed_spread(per_seed: Mapping[int, List[Dict[str, object]]], out: PathLike) -> Dict[str, Path]:
    """Writes ``compare_seeds.json`` (the spread, the margins and every seed's rows) and ``compare_seeds.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spread, margins = seed_spread(per_seed), distillation_margins(per_seed)
    record = {"spread": spread, "margins": {str(k): v for k, v in margins.items()},
              "rows": {str(k): v for k, v in per_seed.items()}}
    (out / "compare_seeds.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "compare_seeds.md").write_text(seed_markdown(spread, margins) + "\n")
    return {"json": out / "compare_seeds.json", "markdown": out / "compare_seeds.md"}
