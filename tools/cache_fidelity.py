"""How closely cached teacher maps, replayed on augmented samples, match the teachers run on those samples.

    python tools/cache_fidelity.py --data SYNTH_ROOT --pose-teacher CKPT --seg-teacher CKPT
        [--input-size 128] [--cache-sizes 128 192 256 160,192,224] [--samples 64] [--max-rotation 30]
        [--scale-range 0.75 1.5] [--max-translate 0.2] [--flip-prob 0.5] [--mirrored] [--blend] [--teacher-flip]
        [--seed 0]

For every cache size each image is letterboxed as :class:`distill.teacher_cache.TeacherCache` does, the
teachers' maps are encoded as on disk (:func:`distill.cache_codec.encode_entry`) and replayed with
:func:`distill.replay.replay_cached` on a training augmentation of the image; the online maps are the
teachers' answer to that augmented image.
Every cache size sees the same augmentations. A comma-joined entry (``160,192,224``) is a cache of
several sizes: each sample reads the one nearest its scale, as ``CachedTeacherDataset`` does. Printed as
JSON, per cache and for plain, mirrored and all samples:

* ``heatmaps_rel_err`` / ``heatmaps_lr_rel_err``: sum (cached - online)^2 / sum online^2 (0 is exact);
* ``peak_ratio``: the cached map's largest value within 1 pixel of each online peak (> 0.3) over the peak;
* ``peak_dx`` / ``peak_dy`` / ``peak_shift``: where the cached peak lies against the online one (soft
  argmax in a 5x5 window, stride-2 map pixels): mean signed offsets and mean distance;
* ``seg_agreement``: share of the pixels inside the cached map whose argmax class agrees;
* ``seg_kl``: mean KL(online || cached) of the class distributions there.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from distill.cache_codec import encode_entry
from distill.replay import replay_cached
from distill.teacher_cache import (
    blend_entry,
    bracketing_cache_sizes,
    is_mirrored,
    mirror_letterbox,
    nearest_cache_size,
)
from mtl_ehrnet.data import Cityscapes, CocoKeypoints, SyntheticLayout, TestTransform, TrainTransform
from mtl_ehrnet.data.skeleton import COCO_FLIP_INDEX
from teachers.flip_average import FlipAveragedTeacher
from teachers.frozen import load_teacher

PEAK_THRESHOLD = 0.3
WINDOW = 2  # soft-argmax half-width: a 5x5 window


def _soft_peak(heat: torch.Tensor, y: int, x: int) -> Tuple[float, float]:
    """Centre of mass of max(heat, 0) in the window around (y, x) of a (H, W) map; (x, y) itself when the
    window holds nothing positive."""
    h, w = heat.shape
    y0, y1, x0, x1 = max(y - WINDOW, 0), min(y + WINDOW + 1, h), max(x - WINDOW, 0), min(x + WINDOW + 1, w)
    patch = heat[y0:y1, x0:x1].clamp(min=0)
    total = patch.sum()
    if total <= 1e-12:
        return float(x), float(y)
    ys = torch.arange(y0, y1, dtype=heat.dtype)[:, None]
    xs = torch.arange(x0, x1, dtype=heat.dtype)[None, :]
    return float((patch * xs).sum() / total), float((patch * ys).sum() / total)


def _peak_stats(cached: torch.Tensor, online: torch.Tensor) -> List[Tuple[float, float, float]]:
    """(ratio, dx, dy) for every joint channel of (K, H, W) maps whose online maximum exceeds the threshold."""
    found = []
    for c_map, o_map in zip(cached, online):
        top = float(o_map.max())
        if top <= PEAK_THRESHOLD:
            continue
        y, x = divmod(int(o_map.argmax()), o_map.shape[1])
        near = c_map[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].max()
        cx, cy = _soft_peak(c_map, y, x)
        ox, oy = _soft_peak(o_map, y, x)
        found.append((float(near) / top, cx - ox, cy - oy))
    return found


def _relative_error(cached: torch.Tensor, online: torch.Tensor) -> Tuple[float, float]:
    return float(((cached - online) ** 2).sum()), float((online**2).sum())


@torch.inference_mode()
def cache_fidelity(
    data: Path,
    teachers: Dict[str, nn.Module],
    input_size: int,
    cache_sizes: Sequence[Union[int, Sequence[int]]],
    samples: int,
    augmentation: Optional[Dict] = None,
    seed: int = 0,
    flip_index: Sequence[int] = COCO_FLIP_INDEX,
    mirrored: bool = False,
    blend: bool = False,
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Fidelity figures (see the module docstring) by cache (its sizes comma-joined), then by ``plain`` /
    ``mirrored`` / ``all``.

    Args:
        data: root written by ``mtl-ehrnet synth``.
        teachers: frozen ``{"pose": ..., "seg": ...}`` teachers (either may be missing).
        input_size: the student's square input.
        cache_sizes: the caches to compare: each a letterbox size or several (multiples of 32).
        samples: training images per task.
        augmentation: :class:`TrainTransform` options.
        seed: seeds the augmentations; every cache replays the same ones, and each image's teacher
            passes (online, and letterboxed at each size used) run once for all caches.
        mirrored: also compare each cache built ``mirrored`` (label ``"<sizes> mirrored"``), whose mirrored
            samples read the teachers' pass over the mirrored letterbox.
        blend: also replay each cache of several sizes blended (label ``"<sizes> blend"``, or ``"<sizes>
            mirrored blend"``): each sample mixes the two sizes bracketing its scale, as
            ``CachedTeacherDataset(..., blend=True)`` does.
    """
    layout = SyntheticLayout(data)
    augment = TrainTransform(input_size, **(augmentation or {}))
    sets = {
        "pose": CocoKeypoints(layout.coco_images("train"), layout.coco_annotations("train"), augment, skip_empty=True),
        "seg": Cityscapes(layout.cityscapes_root, "train", augment),
    }
    plain = {
        ",".join(str(s) for s in sizes): sizes
        for sizes in ([c] if isinstance(c, int) else list(c) for c in cache_sizes)
    }
    caches = {label: (sizes, False, False) for label, sizes in plain.items()}
    if mirrored:
        caches.update({f"{label} mirrored": (sizes, True, False) for label, sizes in plain.items()})
    if blend:
        caches.update(
            {
                f"{label} blend": (sizes, has_mirrors, True)
                for label, (sizes, has_mirrors, _) in list(caches.items())
                if len(sizes) > 1
            }
        )
    sums = {label: {view: defaultdict(list) for view in ("plain", "mirrored")} for label in caches}
    torch.manual_seed(seed)
    for task, teacher in teachers.items():
        dataset = sets[task]
        for index in range(min(samples, len(dataset))):
            raw = dataset.load(index)
            sample = augment(raw)
            online = teacher(sample["image"][None])
            view = "mirrored" if is_mirrored(sample["affine"]) else "plain"
            letterboxed: Dict[
                Tuple[int, bool], Dict[str, torch.Tensor]
            ] = {}  # one teacher pass per size and view, shared by the caches

            def entry(size: int, from_mirror: bool) -> Dict[str, torch.Tensor]:
                if (size, from_mirror) not in letterboxed:
                    boxed = TestTransform(size)(raw)
                    image, affine = (
                        mirror_letterbox(boxed["image"], boxed["affine"])
                        if from_mirror
                        else (boxed["image"], boxed["affine"])
                    )
                    outputs = {k: v[0] for k, v in teacher(image[None]).items()}
                    encoded = encode_entry(outputs, affine, tag_kd="none")
                    letterboxed[size, from_mirror] = {k: v[None] for k, v in encoded.items()}
                return letterboxed[size, from_mirror]

            for label, (sizes, has_mirrors, blended) in caches.items():
                from_mirror = has_mirrors and view == "mirrored"
                if blended:
                    (size, _), (other, weight) = bracketing_cache_sizes(
                        sizes, sample["affine"], (raw.height, raw.width)
                    )
                    cached = {**entry(size, from_mirror), **blend_entry(entry(other, from_mirror), weight)}
                    cached["blend_weight"] = cached["blend_weight"][None]
                else:
                    cached = entry(nearest_cache_size(sizes, sample["affine"], (raw.height, raw.width)), from_mirror)
                replayed = replay_cached(cached, sample["affine"][None], tuple(sample["image"].shape[-2:]), flip_index)
                _record(sums[label][view], task, replayed, online)
    return {
        label: {
            name: _summary(parts)
            for name, parts in (
                ("plain", [views["plain"]]),
                ("mirrored", [views["mirrored"]]),
                ("all", [views["plain"], views["mirrored"]]),
            )
        }
        for label, views in sums.items()
    }


def _record(
    view: Dict[str, List[float]], task: str, replayed: Dict[str, torch.Tensor], online: Dict[str, torch.Tensor]
) -> None:
    """Adds one sample's comparison of replayed and online maps (batch of one) to ``view``'s lists."""
    view[f"{task}_samples"].append(1.0)
    if task == "pose":
        for key in ("heatmaps", "heatmaps_lr"):
            err, norm = _relative_error(replayed[key][0], online[key][0])
            view[f"{key}_err"].append(err)
            view[f"{key}_norm"].append(norm)
        for ratio, dx, dy in _peak_stats(replayed["heatmaps"][0], online["heatmaps"][0]):
            view["peak_ratio"].append(ratio)
            view["peak_dx"].append(dx)
            view["peak_dy"].append(dy)
            view["peak_shift"].append((dx * dx + dy * dy) ** 0.5)
    else:
        inside = replayed["valid_lr"][0] > 0
        log_online = F.log_softmax(online["seg"][0], dim=0)
        log_cached = F.log_softmax(replayed["seg"][0], dim=0)
        agree = (log_online.argmax(0) == log_cached.argmax(0))[inside]
        kl = (log_online.exp() * (log_online - log_cached)).sum(0)[inside]
        view["seg_agreement"].extend(agree.float().tolist())
        view["seg_kl"].extend(kl.tolist())


def _summary(parts: List[Dict[str, List[float]]]) -> Dict[str, float]:
    merged: Dict[str, List[float]] = defaultdict(list)
    for part in parts:
        for key, values in part.items():
            merged[key].extend(values)
    out: Dict[str, float] = {f"{task}_samples": float(len(merged[f"{task}_samples"])) for task in ("pose", "seg")}
    for key in ("heatmaps", "heatmaps_lr"):
        if merged[f"{key}_norm"]:
            out[f"{key}_rel_err"] = sum(merged[f"{key}_err"]) / max(sum(merged[f"{key}_norm"]), 1e-12)
    for key in ("peak_ratio", "peak_dx", "peak_dy", "peak_shift", "seg_agreement", "seg_kl"):
        if merged[key]:
            out[key] = sum(merged[key]) / len(merged[key])
    out["peaks"] = float(len(merged["peak_ratio"]))
    return out


def _sizes(text: str) -> List[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size or comma-joined sizes such as 160,192,224, got {text!r}"
        ) from None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="root written by `mtl-ehrnet synth`")
    parser.add_argument("--pose-teacher", help="pose teacher checkpoint")
    parser.add_argument("--seg-teacher", help="segmentation teacher checkpoint")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument(
        "--cache-sizes",
        type=_sizes,
        nargs="+",
        default=[[128], [192], [256]],
        help="caches to compare: a size, or sizes joined by commas for one cache of several",
    )
    parser.add_argument(
        "--mirrored",
        action="store_true",
        help="also compare each cache built with --cache-mirrored (its mirrored samples read the mirror's pass)",
    )
    parser.add_argument(
        "--blend",
        action="store_true",
        help="also replay each cache of several sizes blended, as distill --cache-blend (label '<sizes> blend')",
    )
    parser.add_argument("--samples", type=int, default=64, help="training images per task")
    parser.add_argument("--max-rotation", type=float, default=30.0)
    parser.add_argument("--scale-range", type=float, nargs=2, default=[0.75, 1.5])
    parser.add_argument(
        "--max-translate", type=float, default=0.2, help="translation as a fraction of the crop (0: centred crops)"
    )
    parser.add_argument("--flip-prob", type=float, default=0.5, help="share of mirrored samples")
    parser.add_argument(
        "--teacher-flip",
        action="store_true",
        help="teachers average their pass with the mirror's, as distill --teacher-flip",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if not (args.pose_teacher or args.seg_teacher):
        parser.error("give --pose-teacher, --seg-teacher or both")
    if args.threads:
        torch.set_num_threads(args.threads)
    teachers = {
        task: load_teacher(path) for task, path in (("pose", args.pose_teacher), ("seg", args.seg_teacher)) if path
    }
    if args.teacher_flip:
        teachers = {task: FlipAveragedTeacher(t) for task, t in teachers.items()}
    result = cache_fidelity(
        Path(args.data),
        teachers,
        args.input_size,
        args.cache_sizes,
        args.samples,
        {
            "max_rotation": args.max_rotation,
            "scale_range": tuple(args.scale_range),
            "max_translate": args.max_translate,
            "flip_prob": args.flip_prob,
        },
        args.seed,
        mirrored=args.mirrored,
        blend=args.blend,
    )
    print(
        json.dumps(
            {
                size: {view: {k: round(v, 4) for k, v in figures.items()} for view, figures in views.items()}
                for size, views in result.items()
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
