"""What the teacher-output cache saves: one distillation training step with online teachers against
one with cached teacher maps (data loading included), and the one-off cost of building the cache.

    python tools/bench_cache.py --data SYNTH_ROOT [--pose-teacher pose_h-3 --seg-teacher seg_h-3]
        [--student mtl_h-4] [--input-size 128] [--cache-input-size S [S ...]] [--cache-mirrored] [--cache-blend]
        [--tag-kd pseudo] [--batch-size 8] [--steps 10] [--threads N]

Teachers are checkpoints or model names (random weights). The networks' cost does not depend on their
weights, but ``--tag-kd pseudo`` (the default) groups the teacher's maps into pseudo-keypoints on every
step, and an untrained teacher's maps hold so many peaks that the grouping dominates: with model names,
time ``--tag-kd relational`` (or give trained checkpoints).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch.utils.data import DataLoader

from distill.objective import DistillationObjective, KDSettings
from distill.student import default_cache_size
from distill.teacher_cache import CachedTeacherDataset, TeacherCache
from distill.teacher_sources import CachedTeachers
from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import save_checkpoint
from mtl_ehrnet.data import (
    Cityscapes,
    CocoKeypoints,
    MixedTaskDataset,
    SyntheticLayout,
    TrainTransform,
    collate_samples,
)
from mtl_ehrnet.training.step_timer import seconds_per_step
from teachers.frozen import load_teacher


def _teacher(name_or_path: str, scratch: Path):
    path = Path(name_or_path)
    if not path.is_file():
        path = save_checkpoint(scratch / f"{name_or_path}.pt", create_model(name_or_path))
    return load_teacher(path)


def _seconds_per_step(student, objective, data, batch_size: int, steps: int) -> float:
    """Median time of a training step including loading its batch (``workers=0``, so loading is counted)."""
    loader = DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate_samples,
        num_workers=0,
        generator=torch.Generator().manual_seed(0),
        drop_last=True,
    )
    return seconds_per_step(student, objective, iter(loader), steps=steps, warmup=1, channels_last=False)


def bench_cache(
    data: Path,
    pose_teacher: str,
    seg_teacher: str,
    student: str,
    input_size: int,
    batch_size: int,
    steps: int,
    cache_input_size: Optional[Union[int, Sequence[int]]] = None,
    tag_kd: str = "pseudo",
    cache_mirrored: bool = False,
    cache_blend: bool = False,
) -> Dict[str, Any]:
    """Seconds per online and per cached step, their ratio, and the cache's build time (in seconds and in
    online epochs). ``cache_input_size`` (one letterbox size or several) defaults to
    :func:`distill.student.default_cache_size`, as in ``distill``; ``cache_mirrored`` and ``cache_blend`` are
    ``distill``'s ``--cache-mirrored`` and ``--cache-blend``."""
    cache_size = cache_input_size or default_cache_size((input_size, input_size))
    layout = SyntheticLayout(data)
    transform = TrainTransform(input_size)
    pose = CocoKeypoints(layout.coco_images("train"), layout.coco_annotations("train"), transform, skip_empty=True)
    seg = Cityscapes(layout.cityscapes_root, "train", transform)
    with tempfile.TemporaryDirectory() as scratch:
        teachers = {"pose": _teacher(pose_teacher, Path(scratch)), "seg": _teacher(seg_teacher, Path(scratch))}
        net = create_model(student, input_size=input_size).train()
        objective = DistillationObjective(
            net.body.out_channels, teachers["pose"], teachers["seg"], KDSettings(tag_kd=tag_kd)
        )
        online = _seconds_per_step(net, objective, MixedTaskDataset([pose, seg]), batch_size, steps)
        # The cache keeps what the timed tag term reads (grouped joints for pseudo, raw tags for relational).
        store = TeacherCache(
            Path(scratch) / "cache", teachers, cache_size, {"bench": "random teachers"}, mirrored=cache_mirrored,
            tag_kd=tag_kd,
        )
        started = time.perf_counter()
        for tag, dataset in (("pose", pose), ("seg", seg)):
            store.build(dataset, tag, batch_size=batch_size, progress=False)
        build = time.perf_counter() - started
        pose_cached = CachedTeacherDataset(pose, store, "pose", cache_blend)
        cached_data = MixedTaskDataset([pose_cached, CachedTeacherDataset(seg, store, "seg", cache_blend)])
        from_cache = DistillationObjective(net.body.out_channels, None, None, KDSettings(tag_kd=tag_kd),
                                           source=CachedTeachers(tuple(teachers)))
        cached = _seconds_per_step(net, from_cache, cached_data, batch_size, steps)
    epoch_steps = (len(pose) + len(seg)) // batch_size
    return {
        "online_s_per_step": online,
        "cached_s_per_step": cached,
        "cached_over_online": cached / online,
        "cache_build_s": build,
        "cache_build_in_online_epochs": build / (online * epoch_steps),
        "epoch_steps": epoch_steps,
        "cache_input_size": list(store.input_sizes),
        "cache_mirrored": cache_mirrored,
        "cache_blend": pose_cached.blend,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="root written by `mtl-ehrnet synth`")
    parser.add_argument("--pose-teacher", default="pose_h-3")
    parser.add_argument("--seg-teacher", default="seg_h-3")
    parser.add_argument("--student", default="mtl_h-4")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument(
        "--cache-input-size",
        type=int,
        nargs="+",
        help="the cache's letterbox size(s) (default: as distill, 1.5x the input)",
    )
    parser.add_argument(
        "--cache-mirrored", action="store_true", help="also cache each image's mirror, as distill --cache-mirrored"
    )
    parser.add_argument(
        "--cache-blend",
        action="store_true",
        help="blend the two sizes around each sample's scale, as distill --cache-blend",
    )
    parser.add_argument(
        "--tag-kd",
        choices=("pseudo", "relational", "none"),
        default="pseudo",
        help="tag distillation of the timed steps (pseudo groups the teacher's maps on every step)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_cache(
        Path(args.data),
        args.pose_teacher,
        args.seg_teacher,
        args.student,
        args.input_size,
        args.batch_size,
        args.steps,
        args.cache_input_size,
        args.tag_kd,
        args.cache_mirrored,
        args.cache_blend,
    )
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
