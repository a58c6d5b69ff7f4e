"""Associative-embedding grouping exactly as HigherHRNet's test parser decides it, for the reference pipeline.

The decisions (and the float precision each is made in) follow the reference's parser: max-pool NMS,
the top ``max_people`` peaks per joint, joints matched in a fixed order to people on
``round(tag distance) * 100 - value``, a quarter-pixel step toward the higher neighbour, the score as
the mean joint value before refinement, and missing joints filled from the whole map. Two behaviours
that look accidental are kept because they change results:

* people are keyed by the first tag value of the detection that started them, so a new detection
  whose tag equals an existing key overwrites that person's joint and restarts its tag list;
* only the first ``max_people`` people ever started are candidates for matching.

Matching uses ``scipy.optimize.linear_sum_assignment`` by default. The reference calls the ``munkres``
package; both find a minimum-cost assignment, but the cost ``round(distance) * 100 - value`` ties often
(swapping two detections between two people whose rounded distances add up the same costs the same), and
the solvers break ties differently. ``assignment="munkres"`` calls that package the way the reference
does, for its tie-breaking, which changed with munkres 2.0: 1.0.12, 1.1.2 and 1.1.4 (the versions of the
published results' time) agree with each other and not with 2.0 or 3.0, so use ``munkres<2``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from mtl_ehrnet.inference.grouping import COCO_JOINT_ORDER

_UNMATCHABLE = 1e12  # stands in for a non-finite assignment cost (the reference would fail on one)
_MUNKRES_PAD = 1e10  # the reference's cost for dummy people when there are more detections than people
ASSIGNMENTS = ("scipy", "munkres")
_REFINE_SHORTLIST = 1024  # strongest pixels per joint searched first when filling missing joints


@dataclass(frozen=True)
class ReferenceGrouping:
    """The parser settings of HigherHRNet's published COCO test configs (``TEST`` section).

    Attributes:
        max_people: peaks kept per joint, and people considered for matching (``DATASET.MAX_NUM_PEOPLE``).
        detection_threshold: peaks at or below it are ignored (``DETECTION_THRESHOLD`` 0.1 in the
            published configs; the code default 0.2 is never used for them).
        tag_threshold: a joint joins a person only if its tag is closer than this (``TAG_THRESHOLD``).
        nms_kernel: max-pool window, padding ``nms_kernel // 2`` (``NMS_KERNEL`` 5, ``NMS_PADDING`` 2).
        use_detection_value: match on ``round(distance) * 100 - value`` (``USE_DETECTION_VAL``).
        ignore_too_much: skip a joint once ``max_people`` people exist (``IGNORE_TOO_MUCH``).
        adjust: quarter-pixel step toward the higher neighbour (``ADJUST``).
        refine: fill missing joints (``REFINE``).
        assignment: ``"scipy"`` or ``"munkres"`` (the reference's solver and tie-breaking; needs
            ``pip install "munkres<2"``, a later version warns).
    """

    max_people: int = 30
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    nms_kernel: int = 5
    use_detection_value: bool = True
    ignore_too_much: bool = False
    adjust: bool = True
    refine: bool = True
    assignment: str = "scipy"

    def __post_init__(self) -> None:
        if self.assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be one of {ASSIGNMENTS}; got {self.assignment!r}")
        if self.assignment == "munkres":
            try:
                import munkres
            except ImportError as err:
                raise ValueError('assignment="munkres" needs the munkres package: pip install "munkres<2"') from err
            version = str(getattr(munkres, "__version__", "0"))
            if int(version.split(".")[0] or 0) >= 2:
                warnings.warn(f"munkres {version} breaks equal-cost ties unlike munkres 1.x, which the published "
                              'HigherHRNet results used: pip install "munkres<2" to reproduce them', stacklevel=2)

    @classmethod
    def from_overrides(cls, overrides: Dict[str, object]) -> "ReferenceGrouping":
        """Settings with some fields replaced; an unknown name is refused with the known ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"reference grouping has no option(s) {unknown}; known: {known}")
        return cls(**overrides)  # type: ignore[arg-type]


def group_reference(
    heatmaps: torch.Tensor, tags: torch.Tensor, settings: ReferenceGrouping = ReferenceGrouping()
) -> Tuple[np.ndarray, np.ndarray]:
    """Groups one image's joint detections into people, with the reference parser's decisions.

    Args:
        heatmaps: (K, H, W) float32 joint heatmaps (at input resolution in the reference pipeline).
        tags: (K, H, W, D) float32 tag maps, D = 2 with flip test.
        settings: parser settings.

    Returns:
        people: (P, K, 3) float32 (x, y, value) in map coordinates where pixel ``i`` spans ``[i, i + 1)``
            (a peak at pixel ``i`` sits at ``i + 0.5``, adjusted by a quarter pixel); value 0 marks a joint
            that was not found. Order: as the people were started (the reference's order).
        scores: (P,) float32 mean joint value over all K joints, before refinement.
    """
    if heatmaps.dim() != 3 or tags.dim() != 4 or tags.shape[:3] != heatmaps.shape:
        raise ValueError(f"expected heatmaps (K, H, W) and tags (K, H, W, D), "
                         f"got {tuple(heatmaps.shape)} and {tuple(tags.shape)}")
    num_joints = heatmaps.shape[0]
    order = COCO_JOINT_ORDER if num_joints == len(COCO_JOINT_ORDER) else tuple(range(num_joints))
    values, xs, ys, peak_tags = _top_peaks(heatmaps, tags, settings)
    people = _match(values, xs, ys, peak_tags, order, settings)
    if people.shape[0] == 0:
        return np.zeros((0, num_joints, 3), np.float32), np.zeros((0,), np.float32)
    det = heatmaps.cpu().numpy()
    if settings.adjust:
        _adjust(people, det)
    scores = np.array([person[:, 2].mean() for person in people], np.float32)
    if settings.refine:
        _refine(people, heatmaps, tags, det)
    return people[..., :3].copy(), scores


def _top_peaks(
    heatmaps: torch.Tensor, tags: torch.Tensor, settings: ReferenceGrouping
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """values (K, k) float32, xs and ys (K, k) int64, tags (K, k, D) float32 of the k strongest NMS peaks."""
    num_joints, height, width = heatmaps.shape
    pooled = F.max_pool2d(heatmaps[None], settings.nms_kernel, stride=1, padding=settings.nms_kernel // 2)[0]
    peaks_only = heatmaps * torch.eq(pooled, heatmaps).float()
    # Same call shape as the reference's, so that equal values come out in the same order.
    values, flat = peaks_only.view(1, num_joints, -1).topk(settings.max_people, dim=2)
    values, flat = values[0], flat[0]
    dims = tags.shape[-1]
    flat_tags = tags.reshape(num_joints, height * width, dims)
    peak_tags = torch.gather(flat_tags, 1, flat[..., None].expand(-1, -1, dims))
    flat_np = flat.cpu().numpy()
    return values.cpu().numpy(), flat_np % width, flat_np // width, peak_tags.cpu().numpy()


def _match(
    values: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    peak_tags: np.ndarray,
    order: Sequence[int],
    settings: ReferenceGrouping,
) -> np.ndarray:
    """People (P, K, 3 + D) float32 rows (x, y, value, tags...), joint by joint in ``order``."""
    num_joints, dims = values.shape[0], peak_tags.shape[-1]
    rows_of: List[np.ndarray] = []  # per person (K, 3 + D) float64, zeros where no joint
    tags_of: List[List[np.ndarray]] = []  # per person the float32 tags of its joints, in joining order
    person_by_key: Dict[float, int] = {}

    def start(joint: int, row: np.ndarray, tag: np.ndarray) -> None:
        key = float(tag[0])
        person = person_by_key.get(key)
        if person is None:
            person = person_by_key[key] = len(rows_of)
            rows_of.append(np.zeros((num_joints, 3 + dims)))
            tags_of.append([])
        rows_of[person][joint] = row
        tags_of[person] = [tag]

    for position, joint in enumerate(order):
        keep = values[joint] > settings.detection_threshold
        if not keep.any():
            continue
        tags = peak_tags[joint][keep]
        columns = (xs[joint][keep, None], ys[joint][keep, None], values[joint][keep, None], tags)
        rows = np.concatenate(columns, axis=1)
        if position == 0 or not rows_of:
            for row, tag in zip(rows, tags):
                start(joint, row, tag)
            continue
        candidates = min(len(rows_of), settings.max_people)
        if settings.ignore_too_much and candidates == settings.max_people:
            continue
        means = np.array([np.mean(tags_of[p], axis=0) for p in range(candidates)])  # float32, as the reference's
        dist = np.linalg.norm(rows[:, None, 3:] - means[None], ord=2, axis=2)
        cost = np.round(dist) * 100 - rows[:, 2:3] if settings.use_detection_value else dist
        cost = np.nan_to_num(cost, nan=_UNMATCHABLE, posinf=_UNMATCHABLE, neginf=-_UNMATCHABLE)
        assigned = dict(zip(*_assign(cost, settings.assignment)))
        for index, (row, tag) in enumerate(zip(rows, tags)):
            person = assigned.get(index)
            if person is not None and dist[index, person] < settings.tag_threshold:
                rows_of[person][joint] = row
                tags_of[person].append(tag)
            else:
                start(joint, row, tag)
    if not rows_of:
        return np.zeros((0, num_joints, 3 + dims), np.float32)
    return np.array(rows_of).astype(np.float32)


def _assign(cost: np.ndarray, solver: str) -> Tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of rows (detections) to columns (people): matched row and column indices."""
    if solver == "scipy":
        return linear_sum_assignment(cost)
    from munkres import Munkres

    num_rows, num_cols = cost.shape
    if num_rows > num_cols:  # the reference's square padding; rows that land on it start new people
        cost = np.concatenate((cost, np.full((num_rows, num_rows - num_cols), _MUNKRES_PAD)), axis=1)
    pairs = np.array(Munkres().compute(cost.copy()), dtype=np.int64).reshape(-1, 2)
    real = pairs[:, 1] < num_cols
    return pairs[real, 0], pairs[real, 1]


def _quarter_steps(det: np.ndarray, joint: np.ndarray, x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Steps (dx, dy) of +0.25 toward the higher horizontal / vertical neighbour of integer positions (x, y)
    on ``det[joint]`` (det: (K, H, W)), -0.25 otherwise (ties too); neighbours clamped at the borders."""
    height, width = det.shape[-2:]
    right = det[joint, y, np.minimum(x + 1, width - 1)] > det[joint, y, np.maximum(x - 1, 0)]
    down = det[joint, np.minimum(y + 1, height - 1), x] > det[joint, np.maximum(y - 1, 0), x]
    return np.where(right, 0.25, -0.25), np.where(down, 0.25, -0.25)


def _adjust(people: np.ndarray, det: np.ndarray) -> None:
    """Moves every found joint of ``people`` (P, K, 3 + D) to its pixel centre plus a quarter step, in place
    (det: (K, H, W))."""
    person, joint = np.nonzero(people[:, :, 2] > 0)
    x = people[person, joint, 0].astype(np.int64)
    y = people[person, joint, 1].astype(np.int64)
    step_x, step_y = _quarter_steps(det, joint, x, y)
    people[person, joint, 0] = x + 0.5 + step_x
    people[person, joint, 1] = y + 0.5 + step_y


def _refine(people: np.ndarray, heatmaps: torch.Tensor, tags: torch.Tensor, det: np.ndarray) -> None:
    """Fills missing joints in place: for each, the map position maximising
    ``value - round(|tag - person's mean tag|)`` (the first in row-major order on ties), at its pixel centre
    plus a quarter step, if its value > 0.

    The search runs on the ``_REFINE_SHORTLIST`` strongest pixels of each joint first; the result is the
    whole map's argmax whenever the best shortlisted score beats the weakest shortlisted value (no other
    pixel can then reach it, since ``round(distance) >= 0``), and the whole map is searched otherwise.

    Args:
        people: (P, K, 3 + D), edited in place.
        heatmaps: (K, H, W); tags: (K, H, W, D); det: heatmaps as numpy.
    """
    num_joints, height, width = heatmaps.shape
    dims = tags.shape[-1]
    flat_det = heatmaps.reshape(num_joints, -1)
    flat_tags = tags.reshape(num_joints, height * width, dims)
    top_val, top_idx = flat_det.topk(min(_REFINE_SHORTLIST, height * width), dim=1)
    top_tags = torch.gather(flat_tags, 1, top_idx[..., None].expand(-1, -1, dims))
    whole_map = top_idx.shape[1] == height * width
    for person in people:
        found = np.flatnonzero(person[:, 2] > 0)
        missing = np.flatnonzero(person[:, 2] == 0)
        if found.size == 0 or missing.size == 0:
            continue
        # The mean of the tags at the (truncated) joint positions, in joint order and float32, as the reference.
        x = person[found, 0].astype(np.int32)
        y = person[found, 1].astype(np.int32)
        flat_found = torch.as_tensor(y.astype(np.int64) * width + x, device=tags.device)
        joints = torch.as_tensor(found, device=tags.device)
        mean_tag = torch.as_tensor(np.mean(flat_tags[joints, flat_found].cpu().numpy(), axis=0), device=tags.device)
        index = torch.as_tensor(missing, device=heatmaps.device)
        score = top_val[index] - ((top_tags[index] - mean_tag) ** 2).sum(dim=-1).sqrt().round()
        best_score = score.max(dim=1, keepdim=True).values
        no_pixel = height * width
        best = torch.where(score == best_score, top_idx[index], no_pixel).min(dim=1).values
        if not whole_map:
            for row in (~(best_score[:, 0] > top_val[index, -1])).nonzero()[:, 0].tolist():
                joint = int(missing[row])
                distance = ((flat_tags[joint] - mean_tag) ** 2).sum(dim=-1).sqrt()
                best[row] = (flat_det[joint] - distance.round()).argmax()
        best_np = best.cpu().numpy()
        by, bx = best_np // width, best_np % width
        value = det[missing, by, bx]
        step_x, step_y = _quarter_steps(det, missing, bx, by)
        fill = value > 0
        person[missing[fill], 0] = (bx + 0.5 + step_x)[fill]
        person[missing[fill], 1] = (by + 0.5 + step_y)[fill]
        person[missing[fill], 2] = value[fill]
