"""Associative-embedding grouping of joint detections into people (HigherHRNet parser semantics).

Same decisions as HigherHRNet's ``HeatmapParser`` (max-pool NMS, top-k per joint, detection and tag
thresholds, matching joints to people on ``round(tag distance) * 100 - value``, adjust, refine, score =
mean joint value) plus thesis 4.4.3's removal of redundant poses, but run at map resolution with
sub-pixel refinement instead of on maps upsampled to the input size, with the map-sized work in torch
and ``scipy.optimize.linear_sum_assignment`` for the matching.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

ArrayLike = Union[np.ndarray, torch.Tensor]

# HigherHRNet matches head, shoulders and hips first: they are found most reliably and seed people.
COCO_JOINT_ORDER: Tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
_UNMATCHABLE = 1e12  # stands in for a non-finite assignment cost
# Pixels per joint tried first when filling missing joints (see _refine_missing).
_REFINE_SHORTLIST = 1024
# Up to this many (joint, person, pixel) scores, missing joints are searched on whole maps instead.
_REFINE_WHOLE_MAPS = 1 << 20
# (person, pixel) scores per pass of a whole-map search: 2 MB temporaries stay in cache (2x faster than 16 MB).
_WHOLE_MAP_CHUNK = 1 << 19


def group_poses(
    heatmaps: ArrayLike,
    tags: ArrayLike,
    *,
    max_people: int = 30,
    detection_threshold: float = 0.1,
    tag_threshold: float = 1.0,
    nms_kernel: int = 5,
    joint_order: Sequence[int] = COCO_JOINT_ORDER,
    use_detection_value: bool = True,
    adjust: bool = True,
    refine: bool = True,
    subpixel: str = "quadratic",
    redundant_distance: float = 1.5,
) -> Tuple[np.ndarray, np.ndarray]:
    """Groups one image's joint detections into poses.

    Args:
        heatmaps: (J, H, W) joint heatmaps, torch tensor (any device) or numpy array.
        tags: (J, H, W) tag maps, or (J, H, W, D) for D tags per joint (flip test concatenates the
            flipped image's tags, D = 2). Same H, W as ``heatmaps``.
        max_people: top-k detections kept per joint, and most people that can receive joints.
        detection_threshold: joints with a peak value at or below this are ignored.
        tag_threshold: a joint joins a person only if its tag is closer than this to the person's
            mean tag.
        nms_kernel: max-pool window of the non-maximum suppression (map pixels).
        joint_order: order in which joints are matched; used when it covers all J joints, else
            0..J-1.
        use_detection_value: match on ``round(distance) * 100 - value`` (reference) rather than on
            the plain distance.
        adjust: sub-pixel refinement of detected joints.
        refine: fill each person's missing joints with the best map location whose tag is near the
            person's mean tag (the score is computed before this, as in the reference).
        subpixel: ``"quadratic"`` (parabola through the log values of the peak and its neighbours:
            exact for Gaussian peaks) or ``"quarter"`` (the reference's quarter-pixel step toward the
            higher neighbour).
        redundant_distance: a pose whose joints lie on average closer than this (map pixels) to
            those of a higher-scoring pose is dropped (thesis 4.4.3: 3 input pixels = 1.5 at the
            stride-2 maps). 0 disables it.

    Returns:
        keypoints: (N, J, 3) float32, (x, y, value) in map pixel coordinates (pixel centres at
            integers), sorted by descending score; value 0 marks a joint that was not found.
        scores: (N,) float32, mean joint value over all J joints.

    Raises:
        ValueError: on mismatched or malformed shapes, or an unknown ``subpixel``.
    """
    # Strided views (a padded batch's maps cut to the image) are read where they lie, never copied whole.
    det = torch.as_tensor(heatmaps).detach().float()
    tag = torch.as_tensor(tags).detach().float().to(det.device)
    if det.dim() != 3:
        raise ValueError(f"heatmaps must be (J, H, W), got {tuple(det.shape)}")
    if tag.dim() == 3:
        tag = tag.unsqueeze(-1)
    if tag.dim() != 4 or tag.shape[:3] != det.shape:
        raise ValueError(f"tags must be (J, H, W) or (J, H, W, D) matching heatmaps {tuple(det.shape)}, "
                         f"got {tuple(tags.shape)}")
    if subpixel not in ("quadratic", "quarter"):
        raise ValueError(f"subpixel must be 'quadratic' or 'quarter', got {subpixel!r}")
    num_joints, height, width = det.shape
    order = list(joint_order) if sorted(joint_order) == list(range(num_joints)) else list(range(num_joints))

    with torch.no_grad():
        # On maps of at least 8 shortlists, one pass finds the pixels both searches read: those above the threshold
        # (NMS) and those at or above each map's sampled floor (refine). Smaller maps are refined whole.
        floor = _sampled_floor(det, _REFINE_SHORTLIST) if refine and height * width >= 8 * _REFINE_SHORTLIST else None
        if floor is not None and not bool(torch.isfinite(floor).all()):
            floor = None
        strong = None
        if floor is not None:
            above = torch.nextafter(torch.full_like(floor, detection_threshold), torch.full_like(floor, math.inf))
            strong = _pixels_at_or_above(det, torch.minimum(above, floor), det.numel() // 8)  # >= above: > threshold
        vals, inds, tag_k = _top_k(det, tag, max_people, nms_kernel, detection_threshold, strong)
    vals, inds, tag_k = vals.cpu().numpy(), inds.cpu().numpy(), tag_k.cpu().numpy()

    members, tag_sum, count = _match(vals, tag_k, order, max_people, detection_threshold, tag_threshold,
                                     use_detection_value)
    num_people = members.shape[0]
    if num_people == 0:
        return np.zeros((0, num_joints, 3), np.float32), np.zeros((0,), np.float32)

    found = members >= 0
    joint_idx = np.broadcast_to(np.arange(num_joints), members.shape)
    flat = np.where(found, inds[joint_idx, np.maximum(members, 0)], 0)
    value = np.where(found, vals[joint_idx, np.maximum(members, 0)], 0.0).astype(np.float32)
    scores = value.mean(axis=1)
    ys, xs = flat // width, flat % width

    det_cpu = det.cpu().numpy()
    keypoints = np.zeros((num_people, num_joints, 3), np.float32)
    keypoints[..., 0], keypoints[..., 1], keypoints[..., 2] = xs, ys, value
    if adjust:
        dx, dy = _subpixel_offsets(det_cpu, joint_idx[found], ys[found], xs[found], subpixel)
        keypoints[found, 0] += dx
        keypoints[found, 1] += dy
    if refine:
        with torch.no_grad():
            _refine_missing(det, tag, det_cpu, keypoints, tag_sum / count[:, None], subpixel, floor, strong)

    order_by_score = np.argsort(-scores, kind="stable")
    keypoints, scores = keypoints[order_by_score], scores[order_by_score]
    if redundant_distance > 0:
        keep = _non_redundant(keypoints, redundant_distance)
        keypoints, scores = keypoints[keep], scores[keep]
    return keypoints, scores.astype(np.float32)


class _Pixels(NamedTuple):
    """Pixels of maps (J, H, W), joint by joint in pixel order: joint (or row), y, x and value, each (N,)."""

    joint: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    value: torch.Tensor

    def where(self, keep: torch.Tensor) -> "_Pixels":
        # One nonzero for the four columns: boolean indexing would run it once per column.
        at = keep.nonzero().squeeze(1)
        return _Pixels(*(column.index_select(0, at) for column in self))


def _pixels_at_or_above(det: torch.Tensor, low: torch.Tensor, most: int) -> Optional[_Pixels]:
    """Every pixel of ``det`` (J, H, W) at or above its joint's ``low`` (J,), or None where there are more than
    ``most`` (an untrained model's maps): the searches then scan the maps themselves."""
    if det.device.type == "cpu":
        found = _scan_in_memory_order(det.numpy(), low.numpy(), most)
        if found is None:
            return None
        joint, y, x = (torch.from_numpy(c) for c in found)
        return _Pixels(joint, y, x, det[joint, y, x])
    keep = det >= low[:, None, None]
    if int(torch.count_nonzero(keep)) > most:
        return None
    joint, y, x = keep.nonzero(as_tuple=True)
    return _Pixels(joint, y, x, det[joint, y, x])


def _scan_in_memory_order(
    det: np.ndarray, low: np.ndarray, most: int
) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(joint, y, x) (N,) int64 of the pixels of ``det`` (J, H, W) at or above ``low`` (J,), joint by joint in
    pixel order as ``nonzero`` lists them, or None where there are more than ``most``.

    On a CPU this takes half the time of the torch version: the maps are compared in the order they lie in memory
    (the predictor's are channels-last views, whose joint-major comparison strides across every pixel), and
    numpy's ``flatnonzero`` is several times faster than ``torch.nonzero``.
    """
    axes = _memory_order(det.strides)
    maps = det.transpose(axes)
    bound = low.reshape([-1 if a == 0 else 1 for a in axes])
    if axes[0] != 0 and maps.size:
        # The bounds spelled out along the inner axes: a bound repeated every J values would cut numpy's
        # innermost loop to J elements (4x slower).
        bound = np.ascontiguousarray(np.broadcast_to(bound, maps.shape)[0])
    keep = maps >= bound
    if np.count_nonzero(keep) > most:
        return None
    return _listed(keep, axes, det.shape)


def _memory_order(strides: Sequence[int]) -> Tuple[int, ...]:
    """The axes of maps (J, H, W) from the outermost in memory to the innermost (ties in their own order)."""
    return tuple(sorted(range(len(strides)), key=lambda axis: -strides[axis]))


def _listed(keep: np.ndarray, axes: Tuple[int, ...], shape: Sequence[int]) -> Tuple[np.ndarray, ...]:
    """(joint, y, x) (N,) int64 of the true pixels of ``keep``, a mask of maps of ``shape`` (J, H, W) transposed to
    ``axes``, joint by joint in pixel order as ``nonzero`` lists them."""
    coords = np.unravel_index(np.flatnonzero(keep), keep.shape)
    joint, y, x = (coords[axes.index(d)] for d in range(3))
    if axes != (0, 1, 2):
        num_joints, height, width = shape
        if axes.index(1) < axes.index(2) and num_joints <= np.iinfo(np.int16).max:
            key = joint.astype(np.int16)  # rows before columns: each joint's pixels are in order already
        else:
            key = (joint * height + y) * width + x
        order = np.argsort(key, kind="stable")
        joint, y, x = joint[order], y[order], x[order]
    return joint, y, x


def _nonzero(mask: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """``mask.nonzero(as_tuple=True)`` of a mask of maps (J, H, W); on a CPU listed by numpy in memory order,
    several times faster."""
    if mask.device.type != "cpu":
        return mask.nonzero(as_tuple=True)
    axes = _memory_order(mask.stride())
    return tuple(torch.from_numpy(c) for c in _listed(mask.permute(axes).contiguous().numpy(), axes, mask.shape))


def _top_k(
    det: torch.Tensor, tag: torch.Tensor, k: int, nms_kernel: int, threshold: float, strong: Optional[_Pixels] = None
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k strongest NMS peaks above ``threshold`` per joint: the peaks of max-pool NMS, then top-k, then
    thresholding, as the reference finds them (``strong``: the pixels above it, when already found).

    Returns:
        values (J, k) (0 where a joint has fewer peaks), flat indices (J, k), tags (J, k, D).
    """
    num_joints, height, width = det.shape
    joint, flat = _peaks(det, nms_kernel, threshold, strong)
    value = det[joint, flat // width, flat % width]
    # Group by joint, strongest first; the rank within a joint decides who is in the top k.
    by_value = torch.argsort(value, descending=True, stable=True)
    order = by_value[torch.argsort(joint[by_value], stable=True)]
    joint, flat, value = joint[order], flat[order], value[order]
    first = torch.searchsorted(joint, torch.arange(num_joints, device=det.device))
    rank = torch.arange(joint.numel(), device=det.device) - first[joint]
    keep = rank < k
    vals = torch.zeros((num_joints, k), device=det.device)
    inds = torch.zeros((num_joints, k), dtype=torch.long, device=det.device)
    vals[joint[keep], rank[keep]] = value[keep]
    inds[joint[keep], rank[keep]] = flat[keep]
    tag_k = tag[torch.arange(num_joints, device=det.device)[:, None], inds // width, inds % width]  # (J, k, D)
    return vals, inds, tag_k


def _peaks(det: torch.Tensor, kernel: int, threshold: float,
           strong: Optional[_Pixels] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(joint, flat index) of every pixel of ``det`` (J, H, W) above ``threshold`` that is the maximum of its
    ``kernel`` x ``kernel`` window (max-pool NMS), joint by joint in pixel order.

    A trained model's maps hold few pixels above the threshold: only those are tested (picked from ``strong``,
    a superset, when given), each against its window read at clamped coordinates (a clamped neighbour lies in
    the same window, so the maximum is the padded one's). Maps mostly above it (an untrained model's) take the
    whole-map window maximum instead.
    """
    num_joints, height, width = det.shape
    most = det.numel() // (kernel * kernel)
    if strong is not None:
        above = strong.where(strong.value > threshold)
        above = above if above.joint.numel() <= most else None
    else:
        bound = torch.full((num_joints,), threshold, device=det.device)
        above = _pixels_at_or_above(det, torch.nextafter(bound, torch.full_like(bound, math.inf)), most)
    if above is None:
        joint, y, x = _nonzero((_window_max(det, kernel) == det) & (det > threshold))
        return joint, y * width + x
    joint, y, x, value = above
    # Offsets into the maps' memory, read by one flat gather each: several times faster than 3-d indexing.
    span = 1 + sum((n - 1) * s for n, s in zip(det.shape, det.stride())) if det.numel() else 0
    memory = det.as_strided((span,), (1,))
    stride_j, stride_y, stride_x = det.stride()
    at = joint * stride_j + y * stride_y + x * stride_x
    # A pixel below one of its four neighbours is no window maximum: only the few that pass read the window.
    passes = value >= memory.take(torch.where(y > 0, at - stride_y, at))
    passes &= value >= memory.take(torch.where(y < height - 1, at + stride_y, at))
    passes &= value >= memory.take(torch.where(x > 0, at - stride_x, at))
    passes &= value >= memory.take(torch.where(x < width - 1, at + stride_x, at))
    joint, y, x, value = _Pixels(joint, y, x, value).where(passes)
    shift = torch.arange(-(kernel // 2), kernel // 2 + 1, device=det.device)
    rows = (y[:, None] + shift).clamp_(0, height - 1) * stride_y  # (N, kernel)
    cols = (x[:, None] + shift).clamp_(0, width - 1) * stride_x
    window = memory.take((joint * stride_j)[:, None, None] + rows[:, :, None] + cols[:, None, :])
    peak = window.amax(dim=(1, 2)) == value
    return joint[peak], (y * width + x)[peak]


def _window_max(det: torch.Tensor, kernel: int) -> torch.Tensor:
    """Max over each pixel's ``kernel`` x ``kernel`` window of ``det`` (J, H, W), as ``max_pool2d`` with stride 1
    and ``kernel // 2`` padding.

    Taken along rows then columns (the max is separable), each as ``kernel - 1`` element-wise maxima of
    shifted views: plain vectorised passes, 3x faster on a CPU than ``max_pool2d``'s window loop; and on the
    maps in the order they lie in memory (channels-last maps: joints innermost), 3x faster again.
    """
    r = kernel // 2
    axes = _memory_order(det.stride())
    out = det.permute(axes)
    for axis in (2, 1):
        dim = axes.index(axis)
        size = out.shape[dim]
        padded = F.pad(out, [0, 0] * (2 - dim) + [r, r], value=float("-inf"))  # F.pad lists the last dim first
        out = padded.narrow(dim, 0, size)
        for shift in range(1, kernel):
            out = torch.maximum(out, padded.narrow(dim, shift, size))
    return out.permute([axes.index(d) for d in range(3)])


def _match(
    vals: np.ndarray,
    tag_k: np.ndarray,
    order: Sequence[int],
    max_people: int,
    detection_threshold: float,
    tag_threshold: float,
    use_detection_value: bool,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assigns detections to people joint by joint.

    Args:
        vals: (J, K) peak values; tag_k: (J, K, D) their tags.

    Returns:
        members: (P, J) int, index into K of each person's joint, -1 if none.
        tag_sum: (P, D) sum of the person's joint tags; count: (P,) number of joints.
    """
    num_joints, k = vals.shape
    dim = tag_k.shape[-1]
    capacity = num_joints * k
    members = np.full((capacity, num_joints), -1, np.int64)
    tag_sum = np.zeros((capacity, dim), np.float64)
    count = np.zeros((capacity,), np.int64)
    num_people = 0
    detected = vals > detection_threshold
    for joint in order:
        rows = np.flatnonzero(detected[joint])
        if rows.size == 0:
            continue
        tags = tag_k[joint, rows].astype(np.float64)
        new_rows = rows
        if num_people > 0:
            grouped = min(num_people, max_people)
            means = tag_sum[:grouped] / count[:grouped, None]
            diff = tags[:, None, :] - means[None, :, :]
            dist = np.sqrt((diff * diff).sum(axis=2))
            cost = np.round(dist) * 100 - vals[joint, rows][:, None] if use_detection_value else dist
            if not np.isfinite(cost).all():
                # A non-finite tag or peak (an untrained or diverged model) must not make the assignment
                # infeasible; such a pair is never within the tag threshold, so it stays unmatched.
                cost = np.nan_to_num(cost, nan=_UNMATCHABLE, posinf=_UNMATCHABLE, neginf=-_UNMATCHABLE)
            if cost.size == 1:
                r = c = np.zeros(1, np.int64)  # one detection, one person: the only assignment
            else:
                r, c = linear_sum_assignment(cost)
            ok = dist[r, c] < tag_threshold
            members[c[ok], joint] = rows[r[ok]]
            tag_sum[c[ok]] += tags[r[ok]]
            count[c[ok]] += 1
            unmatched = np.ones(rows.size, bool)
            unmatched[r[ok]] = False
            new_rows, tags = rows[unmatched], tags[unmatched]
        new = slice(num_people, num_people + new_rows.size)
        members[new, joint] = new_rows
        tag_sum[new] = tags
        count[new] = 1
        num_people += new_rows.size
    return members[:num_people], tag_sum[:num_people], count[:num_people]


def _subpixel_offsets(
    det: np.ndarray, joint: np.ndarray, y: np.ndarray, x: np.ndarray, method: str
) -> Tuple[np.ndarray, np.ndarray]:
    """Sub-pixel offsets (dx, dy) of peaks at integer (y, x) of ``det[joint]`` (det: (J, H, W))."""
    _, height, width = det.shape
    centre = det[joint, y, x]
    left, right = det[joint, y, np.maximum(x - 1, 0)], det[joint, y, np.minimum(x + 1, width - 1)]
    up, down = det[joint, np.maximum(y - 1, 0), x], det[joint, np.minimum(y + 1, height - 1), x]
    if method == "quarter":
        return np.where(right > left, 0.25, -0.25), np.where(down > up, 0.25, -0.25)
    return _parabola_offset(left, centre, right), _parabola_offset(up, centre, down)


def _parabola_offset(before: np.ndarray, centre: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Vertex of the parabola through the log values at -1, 0, +1, clipped to half a pixel."""
    eps = 1e-6
    lb, lc, la = (np.log(np.maximum(v, eps)) for v in (before, centre, after))
    curvature = lb - 2 * lc + la
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < -1e-9, 0.5 * (lb - la) / curvature, 0.0)
    return np.clip(offset, -0.5, 0.5)


def _refine_missing(
    det: torch.Tensor,
    tag: torch.Tensor,
    det_cpu: np.ndarray,
    keypoints: np.ndarray,
    mean_tags: np.ndarray,
    subpixel: str,
    floor: Optional[torch.Tensor] = None,
    strong: Optional[_Pixels] = None,
) -> None:
    """Fills missing joints in place with argmax over the map of ``det - round(|tag - mean tag|)``.

    Small maps are searched whole. Otherwise every missing joint is searched at once, on about
    ``_REFINE_SHORTLIST`` of its strongest pixels (:func:`_strongest_pixels`); no pixel outside them can score
    as high as the floor they lie above (``round(distance) >= 0``), so only a person whose best shortlisted
    score is below it needs the whole map.

    Args:
        det: (J, H, W); tag: (J, H, W, D); det_cpu: det as numpy; keypoints: (P, J, 3) edited in
            place; mean_tags: (P, D) each person's mean joint tag; floor: (J,) each map's sampled floor
            (:func:`_sampled_floor`) and strong: every pixel at or above it, when already found.
    """
    num_joints, height, width = det.shape
    person, joint = np.nonzero(keypoints[..., 2] <= 0)
    if person.size == 0:
        return
    means = torch.as_tensor(mean_tags, dtype=torch.float32, device=det.device)
    joints = np.unique(joint)
    on = torch.as_tensor(joints, device=det.device)
    if joints.size * means.shape[0] * height * width <= _REFINE_WHOLE_MAPS:
        # Small maps: every missing joint's whole map at once costs less than ranking a shortlist.
        maps, tags = det[on].flatten(1), tag[on].flatten(1, 2)
        best = (maps[:, None] - _tag_distance(means, tags).round()).argmax(dim=2)  # (J', P)
        _fill(det_cpu, keypoints, person, joint, best.cpu().numpy()[np.searchsorted(joints, joint), person],
              subpixel)
        return
    pixels = None
    if floor is not None and strong is not None:
        # Each joint's floor where it is refined, NaN (which no value reaches) where it is not; and its row in `on`.
        floor_of = torch.full_like(floor, math.nan)
        floor_of[on] = floor[on]
        picked = strong.where(strong.value >= floor_of[strong.joint])
        row_of = torch.zeros(num_joints, dtype=torch.long, device=det.device)
        row_of[on] = torch.arange(on.numel(), device=det.device)
        pixels = picked._replace(joint=row_of[picked.joint])
    top_idx, top_val, bound = _strongest_pixels(det, _REFINE_SHORTLIST, None if floor is None else floor[on],
                                                pixels, None if joints.size == num_joints else on)
    top_tags = tag[on[:, None], top_idx // width, top_idx % width]  # (J', S, D)
    score = top_val[:, None] - _tag_distance(means, top_tags).round()  # (J', P, S)
    best_score, best_at = score.max(dim=2)  # the first of equal scores, in pixel order, as a whole-map argmax
    best = torch.gather(top_idx, 1, best_at)  # (J', P)
    row = np.searchsorted(joints, joint)
    needs_map = (best_score < bound).cpu().numpy()[row, person]
    for j in np.unique(joint[needs_map]):
        people = person[needs_map & (joint == j)]
        at = int(np.searchsorted(joints, j))
        values, tags = det[j].flatten(), tag[j].flatten(0, 1)  # copied once for every chunk of people
        for chunk in np.array_split(people, -(-people.size * height * width // _WHOLE_MAP_CHUNK)):
            chunk = torch.as_tensor(chunk, device=det.device)
            best[at, chunk] = (values[None] - _tag_distance(means[chunk], tags).round()).argmax(dim=1)
    _fill(det_cpu, keypoints, person, joint, best.cpu().numpy()[row, person], subpixel)


def _sampled_floor(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(J,) the value of each map of ``maps`` (J, H, W) above which a lattice sample of it holds its share of
    ``size`` pixels: about ``size`` pixels of the map lie at or above it, found without ranking the map."""
    _, height, width = maps.shape
    n = height * width
    stride = max(1, math.isqrt(n // (8 * size)))
    sample = maps[:, ::stride, ::stride].flatten(1)
    return sample.topk(-(-sample.shape[1] * size // n), dim=1).values[:, -1]


def _strongest_pixels(maps: torch.Tensor, size: int, floor: Optional[torch.Tensor] = None,
                      pixels: Optional[_Pixels] = None,
                      rows: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """About ``size`` of the strongest pixels of each map of ``maps`` (J, H, W), in pixel order.

    Args:
        floor: (J,) :func:`_sampled_floor` of the maps, and pixels: every pixel at or above it (its joint the
            map's row), when already found.
        rows: (J',) the maps to search, when not all (``floor``, ``pixels`` and the results then count J' rows).
            They are copied out only where the maps themselves are read, not when ``pixels`` suffice.

    Returns:
        flat indices (J, S) and values (J, S) (-inf where a map has fewer than S), and a floor (J, 1) that
        every pixel left out lies below, so a score of at least the floor among them is the whole map's best.

    The floor is the sampled one, cheaper than ``topk`` on large maps. Where that does not narrow the map
    (flat or non-finite maps), it is ``topk``'s ``size``-th value, raised to the next float so that ties with
    it are kept or searched.
    """
    @functools.lru_cache(maxsize=None)
    def searched() -> torch.Tensor:  # the maps searched, copied out at most once
        return maps if rows is None else maps[rows]

    count = maps.shape[0] if rows is None else rows.numel()
    _, height, width = maps.shape
    n = height * width
    device = maps.device
    if size >= n:
        return (torch.arange(n, device=device).expand(count, n), searched().flatten(1),
                torch.full((count, 1), -math.inf, device=device))
    if floor is None:
        floor, pixels = _sampled_floor(searched(), size), None
    if pixels is None and bool(torch.isfinite(floor).all()):
        pixels = _pixels_at_or_above(searched(), floor, count * 4 * size)
    counts = None if pixels is None else torch.bincount(pixels.joint, minlength=count)
    if counts is None or int(counts.max()) > 4 * size:
        values, indices = searched().flatten(1).topk(size, dim=1)
        indices, order = indices.sort(dim=1)
        last = values[:, -1:]
        return indices, values.gather(1, order), torch.nextafter(last, torch.full_like(last, math.inf))
    rank = torch.arange(pixels.joint.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[pixels.joint]
    most = int(counts.max())
    indices = torch.zeros((count, most), dtype=torch.long, device=device)
    values = torch.full((count, most), -math.inf, device=device)
    indices[pixels.joint, rank] = pixels.y * width + pixels.x
    values[pixels.joint, rank] = pixels.value
    return indices, values, floor[:, None]


def _tag_distance(means: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (..., P, N) between people's mean tags ``means`` (P, D) and ``tags`` (..., N, D).

    Taken as plain differences, not ``torch.cdist``'s matrix-product form, which loses precision on the
    way and could tip a distance across the .5 that ``round`` decides on.
    """
    return (tags[..., None, :, :] - means[:, None, :]).norm(dim=-1)


def _fill(det: np.ndarray, keypoints: np.ndarray, person: np.ndarray, joint: np.ndarray, at: np.ndarray,
          subpixel: str) -> None:
    """Writes the refined joints, at flat map positions ``at`` of ``det`` (J, H, W), into ``keypoints`` (P, J, 3)
    where the map's value there is positive."""
    width = det.shape[2]
    ys, xs = at // width, at % width
    value = det[joint, ys, xs]
    dx, dy = _subpixel_offsets(det, joint, ys, xs, subpixel)
    fill = value > 0
    keypoints[person[fill], joint[fill]] = np.stack((xs + dx, ys + dy, value), axis=1)[fill]


def _non_redundant(keypoints: np.ndarray, min_distance: float) -> np.ndarray:
    """Indices of poses kept when each pose (in the given order) is dropped if its joints lie on
    average closer than ``min_distance`` to a pose already kept; only joints both poses have count."""
    present = keypoints[..., 2] > 0
    dist = np.linalg.norm(keypoints[:, None, :, :2] - keypoints[None, :, :, :2], axis=-1)
    both = present[:, None, :] & present[None, :, :]
    n_both = both.sum(-1)
    mean_dist = np.where(n_both > 0, (dist * both).sum(-1) / np.maximum(n_both, 1), np.inf)
    close = mean_dist < min_distance
    kept = np.zeros(keypoints.shape[0], bool)
    for i in range(keypoints.shape[0]):
        kept[i] = not close[i, kept].any()
    return np.flatnonzero(kept)
