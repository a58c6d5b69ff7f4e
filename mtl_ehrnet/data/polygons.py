"""Binary masks as COCO polygons, traced along the pixel borders.

COCO stores a non-crowd object's ``segmentation`` as a list of polygons ``[x1, y1, x2, y2, ...]`` and
``pycocotools.mask.frPyObjects`` rasterises them so that pixel ``(row r, column c)`` is inside when the
square ``[c, c + 1] x [r, r + 1]`` is: a polygon through the pixel corners of a mask's border decodes to
that mask exactly. Polygons cannot hold holes (their union is the object), so a traced mask decodes with
its holes filled, as a COCO annotator draws a person.
"""
from __future__ import annotations

from typing import List

import numpy as np

# Border-edge directions on the corner lattice (x right, y down): +x, +y, -x, -y.
_STEP = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])


def _border_loops(mask: np.ndarray) -> List[np.ndarray]:
    """Closed loops of pixel-corner vertices around the foreground of ``mask``, each (N, 2) as (x, y),
    only where the border turns; the foreground lies on the right of the direction of travel, so outer
    borders run clockwise on screen (positive shoelace area with y down) and holes the other way."""
    height, width = mask.shape
    pad = np.pad(mask, 1)
    inside = pad[1:-1, 1:-1]
    # (neighbour that must be background, corner offset of the edge's start) per direction
    sides = ((pad[:-2, 1:-1], 0, 0), (pad[1:-1, 2:], 1, 0), (pad[2:, 1:-1], 1, 1), (pad[1:-1, :-2], 0, 1))
    xs, ys, directions = [], [], []
    for direction, (neighbour, dx, dy) in enumerate(sides):
        rows, cols = np.nonzero(inside & ~neighbour)
        xs.append(cols + dx)
        ys.append(rows + dy)
        directions.append(np.full(len(rows), direction))
    x, y, d = np.concatenate(xs), np.concatenate(ys), np.concatenate(directions)
    count = len(x)
    start = y * (width + 1) + x
    end = (y + _STEP[d, 1]) * (width + 1) + x + _STEP[d, 0]
    outgoing = np.full(((height + 1) * (width + 1), 4), -1)
    outgoing[start, d] = np.arange(count)
    # Where two pixels touch only at a corner, two edges leave it: turning right first keeps each
    # 4-connected piece of foreground in a loop of its own, so no loop crosses itself.
    following = outgoing[end, (d + 1) % 4]
    for turn in (0, 3):
        following = np.where(following < 0, outgoing[end, (d + turn) % 4], following)
    previous = np.empty(count, dtype=np.int64)
    previous[following] = np.arange(count)
    corner = d != d[previous]
    # From each corner edge to the next one along its loop, skipping the straight runs between them.
    jump = following.copy()
    while not corner[jump].all():
        jump = np.where(corner[jump], jump, following[jump])
    loops, seen = [], np.zeros(count, dtype=bool)
    jump_list = jump.tolist()
    for first in np.flatnonzero(corner).tolist():
        if seen[first]:
            continue
        loop, edge = [], first
        while not seen[edge]:
            seen[edge] = True
            loop.append(edge)
            edge = jump_list[edge]
        loops.append(np.stack([x[loop], y[loop]], axis=1))
    return loops


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    return 0.5 * float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum())


def mask_polygons(mask: np.ndarray) -> List[List[float]]:
    """A mask's outer borders as COCO polygons.

    Args:
        mask: bool (H, W).
    Returns:
        One ``[x1, y1, x2, y2, ...]`` list per 4-connected piece of the mask (at least 4 vertices each, in
        pixel-corner coordinates); ``pycocotools.mask.frPyObjects(polygons, H, W)`` merged decodes to the
        mask with its holes filled. Empty for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not len(rows):
        return []
    top, left = int(rows[0]), int(cols[0])
    crop = mask[top:int(rows[-1]) + 1, left:int(cols[-1]) + 1]
    loops = [loop for loop in _border_loops(crop) if _shoelace(loop) > 0]
    return [(loop + [left, top]).ravel().astype(float).tolist() for loop in loops]
