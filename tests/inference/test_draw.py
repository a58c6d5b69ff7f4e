"""Drawing helpers: colours where they belong, nothing drawn for hidden joints."""
from __future__ import annotations

import numpy as np
import pytest

from mtl_ehrnet.inference.draw import PERSON_COLOURS, cityscapes_palette, colorize, draw_poses, overlay_segmentation


def test_palette_is_cityscapes() -> None:
    palette = cityscapes_palette()
    assert tuple(palette[0]) == (128, 64, 128)  # road
    assert tuple(palette[11]) == (220, 20, 60)  # person
    assert tuple(palette[255]) == (0, 0, 0)


def test_overlay_blends_class_colours() -> None:
    image = np.full((4, 6, 3), 100, np.uint8)
    classes = np.zeros((4, 6), np.int64)
    classes[:, 3:] = 11
    out = overlay_segmentation(image, classes, alpha=0.5)
    assert tuple(out[0, 0]) == (114, 82, 114) and tuple(out[0, 5]) == (160, 60, 80)
    np.testing.assert_array_equal(overlay_segmentation(image, classes, alpha=1.0), colorize(classes))
    with pytest.raises(ValueError):
        overlay_segmentation(image, classes[:, :5])


def test_draw_poses_marks_joints_and_skips_weak_ones() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    pose = np.zeros((1, 17, 3))
    pose[0, 5] = (20, 30, 0.9)
    pose[0, 6] = (60, 30, 0.9)  # shoulders: a limb between them
    pose[0, 0] = (40, 10, 0.05)  # weak nose: not drawn
    out = draw_poses(image, pose)
    assert image.max() == 0, "input untouched"
    assert tuple(out[30, 20]) == PERSON_COLOURS[0] and tuple(out[30, 40]) == PERSON_COLOURS[0]
    assert out[10, 40].max() == 0
    assert draw_poses(image, pose, [0.2], min_score=0.5).max() == 0
    assert draw_poses(image, np.zeros((0, 17, 3))).max() == 0
