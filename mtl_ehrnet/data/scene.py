"""Procedural street scenes: Cityscapes classes in the background, articulated people in front.

One call to :func:`render_scene` paints an RGB image, its Cityscapes label-id map and an instance map
of the people, and returns every person's 17 COCO keypoints. Objects are painted far to near (by the
image row of their ground contact), so nearer people and cars occlude farther ones; a person's
visible mask is what is left of them in the instance map, and a joint covered by something nearer is
labelled visibility 1, as in COCO.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from mtl_ehrnet.data.skeleton import NUM_KEYPOINTS

# Cityscapes label ids (cityscapesscripts.helpers.labels); the ignored ones appear on purpose.
EGO_VEHICLE, STATIC, GROUND, ROAD, SIDEWALK, PARKING = 1, 4, 6, 7, 8, 9
BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = 11, 12, 13, 17, 19, 20
VEGETATION, TERRAIN, SKY, PERSON, CAR = 21, 22, 23, 24, 26

SKIN = ((250, 215, 180), (225, 180, 140), (170, 120, 80), (110, 75, 50))
CLOTHES = ((200, 30, 30), (30, 60, 200), (240, 200, 40), (30, 150, 60), (240, 240, 240),
           (25, 25, 25), (150, 60, 170), (240, 120, 20), (90, 50, 30), (20, 170, 200))
SHOES = ((30, 30, 30), (235, 235, 235), (120, 70, 30), (180, 30, 40))
HAIR = ((20, 15, 10), (90, 60, 30), (200, 170, 90), (130, 130, 130))
CAR_COLOURS = ((10, 20, 120), (160, 10, 10), (200, 200, 205), (20, 20, 25), (0, 90, 140), (60, 110, 60))
# Labelled people smaller than this fraction of the image height get no keypoints (COCO does the same
# for tiny people); their region is masked out of the pose loss.
MIN_LABELLED_HEIGHT = 0.09

Colour = Tuple[int, int, int]
Point = Tuple[float, float]


@dataclass(frozen=True)
class SceneOptions:
    """What a scene holds; the defaults are the standard synthetic set.

    Attributes:
        people: (min, max) people per image, crowds aside.
        min_person_height: the smallest person, as a fraction of the image height (people are placed
            near enough to the camera); people smaller than ``MIN_LABELLED_HEIGHT`` get no keypoints.
        max_person_height: the tallest person as a fraction of the image height, or None (people may
            stand close enough to be cut by the bottom edge).
        crowds: one image in five has a crowd annotation.
        empty_fraction: fraction of images with nobody.
    """

    people: Tuple[int, int] = (1, 6)
    min_person_height: float = 0.0
    max_person_height: Optional[float] = None
    crowds: bool = True
    empty_fraction: float = 0.1

    def __post_init__(self) -> None:
        low, high = self.people
        if not 0 <= low <= high:
            raise ValueError(f"people must be (min, max) with 0 <= min <= max, got {self.people}")
        if not 0.0 <= self.min_person_height <= 0.8:
            raise ValueError("min_person_height must be a fraction of the image height in [0, 0.8], "
                             f"got {self.min_person_height}")
        if self.max_person_height is not None and not self.min_person_height < self.max_person_height:
            raise ValueError(f"max_person_height ({self.max_person_height}) must exceed min_person_height "
                             f"({self.min_person_height})")
        if not 0.0 <= self.empty_fraction <= 1.0:
            raise ValueError(f"empty_fraction must be in [0, 1], got {self.empty_fraction}")


@dataclass
class Person:
    """One drawn person.

    Attributes:
        keypoints: float32 (17, 3) COCO (x, y, v); v = 2 visible, 1 occluded, 0 unlabelled (x = y = 0).
        mask: bool (H, W) visible pixels.
        crowd: part of a crowd annotation (keypoints all unlabelled).
    """

    keypoints: np.ndarray
    mask: np.ndarray
    crowd: bool = False


@dataclass
class Scene:
    """A rendered scene: ``image`` uint8 (H, W, 3), ``label_ids`` uint8 (H, W), the people, and the
    crowd regions as bool (H, W) masks (one per crowd annotation)."""

    image: np.ndarray
    label_ids: np.ndarray
    people: List[Person]
    crowds: List[np.ndarray] = field(default_factory=list)


class Canvas:
    """Paints every primitive at once into the image, the label map and the people instance map."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.image = Image.new("RGB", (width, height))
        self.labels = Image.new("L", (width, height))
        self.instances = Image.new("L", (width, height))
        self._draws = [ImageDraw.Draw(im) for im in (self.image, self.labels, self.instances)]

    def _each(self, paint: Callable[[ImageDraw.ImageDraw, object], None], colour: Colour, label: int,
              instance: int) -> None:
        for draw, fill in zip(self._draws, (colour, label, instance)):
            paint(draw, fill)

    def polygon(self, points: Sequence[Point], colour: Colour, label: int, instance: int = 0) -> None:
        self._each(lambda d, f: d.polygon(list(points), fill=f), colour, label, instance)

    def rectangle(self, box: Sequence[float], colour: Colour, label: int, instance: int = 0) -> None:
        x0, y0, x1, y1 = box
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour, label, instance)

    def ellipse(self, center: Point, rx: float, ry: float, colour: Colour, label: int,
                instance: int = 0) -> None:
        box = [center[0] - rx, center[1] - ry, center[0] + rx, center[1] + ry]
        self._each(lambda d, f: d.ellipse(box, fill=f), colour, label, instance)

    def limb(self, a: Point, b: Point, width: float, colour: Colour, label: int, instance: int = 0) -> None:
        """A thick segment with round caps."""
        w = max(1, int(round(width)))
        self._each(lambda d, f: d.line([a, b], fill=f, width=w), colour, label, instance)
        for end in (a, b):
            self.ellipse(end, w / 2, w / 2, colour, label, instance)


def _jitter(rng: np.random.Generator, colour: Colour, amount: int = 18) -> Colour:
    return tuple(int(c) for c in np.clip(np.asarray(colour) + rng.integers(-amount, amount + 1, 3), 0, 255))


def _pick(rng: np.random.Generator, options: Sequence[Colour]) -> Colour:
    return options[int(rng.integers(len(options)))]


def _direction(angle_deg: float) -> np.ndarray:
    """Unit vector at ``angle_deg`` from straight down, positive towards image right."""
    a = math.radians(angle_deg)
    return np.array([math.sin(a), math.cos(a)])


def pose_skeleton(rng: np.random.Generator, foot: Point, height: float, facing_camera: bool) -> np.ndarray:
    """Random walking/waving pose for a person of ``height`` pixels standing at ``foot``.

    Returns:
        float64 (17, 2) COCO joint positions in image pixels.
    """
    joints = np.zeros((NUM_KEYPOINTS, 2))
    # A person facing the camera has their left side on the image right.
    left = 1.0 if facing_camera else -1.0
    lean = rng.normal(0, 6)
    up = -_direction(lean)
    across = np.array([-up[1], up[0]]) * -1  # perpendicular, pointing to image right
    hip = np.array([foot[0], foot[1] - 0.5 * height])
    neck = hip + up * 0.3 * height
    for side, sign in ((0, left), (1, -left)):  # 0: left joints (odd COCO indices), 1: right
        shoulder = neck + across * sign * 0.11 * height
        hip_joint = hip + across * sign * 0.07 * height
        upper = sign * rng.uniform(-10, 100) + lean
        fore = upper + sign * rng.uniform(-15, 90)
        elbow = shoulder + _direction(upper) * 0.17 * height
        wrist = elbow + _direction(fore) * 0.15 * height
        thigh = sign * rng.uniform(-20, 30)
        shin = thigh + rng.uniform(-25, 25)
        knee = hip_joint + _direction(thigh) * 0.24 * height
        ankle = knee + _direction(shin) * 0.24 * height
        for index, point in zip((5, 7, 9, 11, 13, 15), (shoulder, elbow, wrist, hip_joint, knee, ankle)):
            joints[index + side] = point
    head = neck + up * 0.12 * height + across * rng.normal(0, 0.01) * height
    joints[0] = head + np.array([0, 0.012 * height])
    for side, sign in ((0, left), (1, -left)):
        joints[1 + side] = head + across * sign * 0.025 * height - up * 0.015 * height
        joints[3 + side] = head + across * sign * 0.055 * height
    return joints


def draw_person(canvas: Canvas, rng: np.random.Generator, joints: np.ndarray, height: float,
                facing_camera: bool, instance: int) -> None:
    """Paints a body (limbs between the COCO joints, torso, head) in random clothes."""
    shirt, trousers = _jitter(rng, _pick(rng, CLOTHES)), _jitter(rng, _pick(rng, CLOTHES))
    skin, hair = _jitter(rng, _pick(rng, SKIN), 10), _pick(rng, HAIR)
    shoes, shorts = _jitter(rng, _pick(rng, SHOES)), bool(rng.random() < 0.3)
    p = [tuple(j) for j in joints]
    arm_w, leg_w = 0.065 * height, 0.085 * height
    for a, b in ((11, 13), (12, 14)):
        canvas.limb(p[a], p[b], leg_w, trousers, PERSON, instance)
    for a, b in ((13, 15), (14, 16)):  # shins: bare below shorts, so the knee shows
        canvas.limb(p[a], p[b], leg_w * (0.8 if shorts else 1.0), skin if shorts else trousers, PERSON, instance)
    for ankle, knee in ((15, 13), (16, 14)):  # a shoe reaches a little past the ankle, away from the knee
        toe = joints[ankle] + 0.25 * (joints[ankle] - joints[knee])
        canvas.limb(p[ankle], tuple(toe), leg_w * 0.9, shoes, PERSON, instance)
    canvas.polygon([p[5], p[6], p[12], p[11]], shirt, PERSON, instance)
    canvas.limb(p[5], p[6], arm_w, shirt, PERSON, instance)
    canvas.limb(p[11], p[12], leg_w, trousers, PERSON, instance)
    for a, b, c in ((5, 7, 9), (6, 8, 10)):
        canvas.limb(p[a], p[b], arm_w, shirt, PERSON, instance)
        canvas.limb(p[b], p[c], arm_w * 0.8, skin, PERSON, instance)
        canvas.ellipse(p[c], arm_w * 0.6, arm_w * 0.6, skin, PERSON, instance)  # the hand
    neck = (joints[5] + joints[6]) / 2
    head = (joints[3] + joints[4]) / 2
    canvas.limb(tuple(neck), tuple(head), arm_w, skin, PERSON, instance)
    radius = 0.065 * height
    canvas.ellipse(tuple(head), radius, radius * 1.15, skin if facing_camera else hair, PERSON, instance)
    if facing_camera:
        canvas.ellipse(tuple(head - [0, radius * 0.8]), radius, radius * 0.45, hair, PERSON, instance)
        if height > 40:  # eyes and nose are only worth painting when they cover a pixel
            for eye in (1, 2):
                canvas.ellipse(p[eye], radius * 0.18, radius * 0.18, (20, 20, 20), PERSON, instance)
            canvas.ellipse(p[0], radius * 0.15, radius * 0.12, _jitter(rng, skin, 30), PERSON, instance)


def _draw_car(canvas: Canvas, rng: np.random.Generator, x: float, base: float, width: float) -> None:
    body = _jitter(rng, _pick(rng, CAR_COLOURS))
    h = 0.45 * width
    canvas.rectangle([x, base - 0.55 * h, x + width, base - 0.1 * h], body, CAR)
    canvas.polygon([(x + 0.2 * width, base - 0.55 * h), (x + 0.3 * width, base - h),
                    (x + 0.75 * width, base - h), (x + 0.85 * width, base - 0.55 * h)], body, CAR)
    canvas.polygon([(x + 0.28 * width, base - 0.58 * h), (x + 0.34 * width, base - 0.92 * h),
                    (x + 0.71 * width, base - 0.92 * h), (x + 0.78 * width, base - 0.58 * h)],
                   (45, 55, 70), CAR)
    for wheel in (0.22, 0.78):
        canvas.ellipse((x + wheel * width, base - 0.12 * h), 0.1 * width, 0.12 * h, (25, 25, 25), CAR)


def _draw_pole(canvas: Canvas, rng: np.random.Generator, x: float, base: float, height: float) -> None:
    w = max(1.0, 0.025 * height)
    canvas.rectangle([x - w / 2, base - height, x + w / 2, base], _jitter(rng, (150, 150, 150), 10), POLE)
    if rng.random() < 0.5:
        s = 0.12 * height
        canvas.rectangle([x - s / 2, base - height, x + s / 2, base - height + s],
                         _jitter(rng, (225, 205, 10), 10), TRAFFIC_SIGN)
    else:
        s = 0.08 * height
        canvas.rectangle([x - s / 2, base - height, x + s / 2, base - height + 2.5 * s],
                         _jitter(rng, (240, 165, 30), 10), TRAFFIC_LIGHT)


def _draw_background(canvas: Canvas, rng: np.random.Generator, horizon: float) -> None:
    w, h = canvas.width, canvas.height
    canvas.rectangle([0, 0, w, horizon], _jitter(rng, (130, 185, 235)), SKY)
    x = -rng.uniform(0, 0.1) * w
    while x < w:
        bw = rng.uniform(0.1, 0.3) * w
        if rng.random() < 0.8:
            top = horizon - rng.uniform(0.1, 0.45) * h
            colour = _jitter(rng, _pick(rng, ((120, 110, 100), (150, 140, 130), (95, 95, 110), (170, 150, 120))))
            canvas.rectangle([x, top, x + bw, horizon + 1], colour, BUILDING)
            win = max(2.0, 0.03 * h)
            for wy in np.arange(top + win, horizon - win, 2.5 * win):
                for wx in np.arange(x + win, x + bw - win, 2.5 * win):
                    canvas.rectangle([wx, wy, wx + win, wy + win], (60, 70, 90), BUILDING)
        else:
            r = bw / 2
            canvas.ellipse((x + r, horizon - 0.6 * r), r, r, _jitter(rng, (60, 130, 40)), VEGETATION)
        x += bw
    if rng.random() < 0.4:
        x0 = rng.uniform(0, 0.6) * w
        label, colour = (FENCE, (190, 150, 150)) if rng.random() < 0.5 else (WALL, (110, 110, 150))
        canvas.rectangle([x0, horizon - 0.06 * h, x0 + rng.uniform(0.2, 0.4) * w, horizon + 1],
                         _jitter(rng, colour), label)
    canvas.rectangle([0, horizon, w, h], _jitter(rng, (185, 160, 170)), SIDEWALK)
    vanish = rng.uniform(0.35, 0.65) * w
    left, right = rng.uniform(-0.4, 0.15) * w, rng.uniform(0.85, 1.4) * w
    canvas.polygon([(vanish - 0.03 * w, horizon), (vanish + 0.03 * w, horizon), (right, h), (left, h)],
                   _jitter(rng, (80, 80, 88), 8), ROAD)
    for t0 in np.arange(0.05, 1.0, 0.2):  # dashed centre line, still road
        t1 = t0 + 0.08
        y0, y1 = horizon + t0 * (h - horizon), horizon + t1 * (h - horizon)
        x0, x1 = vanish + t0 * ((left + right) / 2 - vanish), vanish + t1 * ((left + right) / 2 - vanish)
        canvas.polygon([(x0 - 0.004 * w * t0, y0), (x0 + 0.004 * w * t0, y0), (x1 + 0.01 * w * t1, y1),
                        (x1 - 0.01 * w * t1, y1)], (235, 235, 235), ROAD)
    if rng.random() < 0.5:
        side = rng.random() < 0.5
        edge = 0.0 if side else w
        canvas.polygon([(edge, horizon + 0.05 * h), (edge, h), ((0.15 if side else 0.85) * w, h)],
                       _jitter(rng, (150, 190, 90)), TERRAIN)
    for label, colour, chance in ((PARKING, (205, 150, 150), 0.2), (GROUND, (90, 20, 90), 0.2)):
        if rng.random() < chance:
            x0, y0 = rng.uniform(0, 0.8) * w, rng.uniform(horizon, h)
            canvas.rectangle([x0, y0, x0 + 0.2 * w, y0 + 0.08 * h], _jitter(rng, colour), label)


def render_scene(rng: np.random.Generator, width: int, height: int, options: SceneOptions = SceneOptions()) -> Scene:
    """Paints one random street scene.

    Args:
        rng: the only source of randomness (same state -> same scene).
        width: image width in pixels.
        height: image height in pixels.
        options: how many people, how small, crowds.

    Returns:
        The :class:`Scene`.
    """
    canvas = Canvas(width, height)
    horizon = rng.uniform(0.35, 0.5) * height
    _draw_background(canvas, rng, horizon)

    # Everything standing on the ground, painted far to near: (ground row, kind, parameters).
    items: List[Tuple[float, str, tuple]] = []
    depth = lambda y: max(y - horizon, 1.0)  # noqa: E731 - apparent size grows below the horizon
    for _ in range(rng.integers(0, 4)):
        y = rng.uniform(horizon + 0.05 * height, 1.1 * height)
        items.append((y, "car", (rng.uniform(-0.2, 1.0) * width, y, 1.6 * depth(y))))
    for _ in range(rng.integers(0, 3)):
        y = rng.uniform(horizon + 0.02 * height, height)
        items.append((y, "pole", (rng.uniform(0, 1) * width, y, 2.2 * depth(y) + 0.1 * height)))
    for _ in range(rng.integers(0, 3)):
        y = rng.uniform(horizon + 0.02 * height, height)
        s = 0.3 * depth(y)
        items.append((y, "static", (rng.uniform(0, 1) * width, y, s)))
    if rng.random() >= options.empty_fraction:
        feet: List[Tuple[float, float]] = []
        # Ground rows in [far_row, near_row] keep the heights 1.5 * depth * [0.85, 1.15] within the options.
        far_row = min(horizon + max(0.04 * height, options.min_person_height * height / (1.5 * 0.85)), 1.15 * height)
        if options.max_person_height is not None:
            near_row = min(horizon + options.max_person_height * height / (1.5 * 1.15), 1.15 * height)
        else:
            near_row = 1.15 * height
        near_row = max(near_row, far_row)
        for _ in range(rng.integers(options.people[0], options.people[1] + 1)):
            if feet and rng.random() < 0.35:  # overlap someone already placed
                fx, fy = feet[int(rng.integers(len(feet)))]
                fx, fy = fx + rng.normal(0, 0.06) * width, fy + rng.normal(0, 0.04) * height
                if options.min_person_height > 0 or options.max_person_height is not None:
                    fy = min(max(fy, far_row), near_row)
            else:
                fx, fy = rng.uniform(-0.05, 1.05) * width, rng.uniform(far_row, near_row)
            feet.append((fx, fy))
            items.append((fy, "person", (fx, fy, 1.5 * depth(fy) * rng.uniform(0.85, 1.15), False)))
    crowd_groups: List[List[int]] = []
    if options.crowds and rng.random() < 0.2:
        cx, cy = rng.uniform(0.15, 0.85) * width, horizon + rng.uniform(0.03, 0.08) * height
        group = []
        for _ in range(rng.integers(5, 10)):
            fy = cy + rng.uniform(-0.015, 0.015) * height
            group.append(len(items))
            items.append((fy, "person", (cx + rng.uniform(-0.08, 0.08) * width, fy, 1.5 * depth(fy), True)))
        crowd_groups.append(group)

    order = sorted(range(len(items)), key=lambda i: items[i][0])
    drawn: dict = {}
    for i in order:
        _, kind, args = items[i]
        if kind == "car":
            _draw_car(canvas, rng, args[0], args[1], args[2])
        elif kind == "pole":
            _draw_pole(canvas, rng, *args)
        elif kind == "static":
            x, y, s = args
            canvas.rectangle([x, y - 1.5 * s, x + s, y], _jitter(rng, (90, 70, 50)), STATIC)
        else:
            fx, fy, size, crowd = args
            facing = bool(rng.random() < 0.75)
            joints = pose_skeleton(rng, (fx, fy), size, facing)
            instance = len(drawn) + 1
            draw_person(canvas, rng, joints, size, facing, instance)
            drawn[i] = (instance, joints, size, facing, crowd)
    if rng.random() < 0.25:
        canvas.polygon([(0, height), (0.15 * width, 0.9 * height), (0.85 * width, 0.9 * height),
                        (width, height)], (25, 25, 35), EGO_VEHICLE)

    instances = np.asarray(canvas.instances)
    people: List[Person] = []
    for instance, joints, size, facing, crowd in drawn.values():
        mask = instances == instance
        if not mask.any():
            continue
        keypoints = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
        if not crowd and size >= MIN_LABELLED_HEIGHT * height:
            xi, yi = np.rint(joints[:, 0]).astype(int), np.rint(joints[:, 1]).astype(int)
            x, y = joints[:, 0], joints[:, 1]
            inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
            if not facing:
                inside[:3] = False  # nose and eyes of someone seen from behind are not labelled
            own = np.zeros(NUM_KEYPOINTS, dtype=bool)
            own[inside] = instances[yi[inside], xi[inside]] == instance
            keypoints[inside, :2] = joints[inside]
            keypoints[inside, 2] = np.where(own[inside], 2, 1)
        people.append(Person(keypoints, mask, crowd))
    crowds = [m for m in (np.isin(instances, [drawn[i][0] for i in g if i in drawn]) for g in crowd_groups)
              if m.any()]

    image = np.asarray(canvas.image, dtype=np.float32) * np.float32(rng.uniform(0.8, 1.15))
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(6.0)
    return Scene(np.clip(image, 0, 255).astype(np.uint8), np.asarray(canvas.labels).copy(), people, crowds)
