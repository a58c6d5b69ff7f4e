"""group_poses: planted people are recovered, no spurious poses, duplicates removed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from planted_people import SKELETON, match_people, people_on_grid, plant, render

from mtl_ehrnet.inference import group_poses, grouping


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def assert_recovered(keypoints: np.ndarray, scores: np.ndarray, joints: np.ndarray, tol: float) -> None:
    """Exactly one pose per planted person, every joint within ``tol`` map pixels."""
    assert keypoints.shape == (joints.shape[0], 17, 3)
    assert scores.shape == (joints.shape[0],)
    who = match_people(keypoints, joints)
    assert sorted(who.tolist()) == list(range(joints.shape[0])), "a person is missed or found twice"
    err = np.linalg.norm(keypoints[..., :2] - joints[who], axis=-1)
    assert err.max() < tol, f"max joint error {err.max():.3f} px"
    assert np.all(keypoints[..., 2] > 0.9)
    assert np.all(np.diff(scores) <= 0), "poses are sorted by score"


@pytest.mark.parametrize("num_people", [1, 10, 30])
@pytest.mark.parametrize("flip_tags", [False, True])
def test_planted_people_recovered(num_people: int, flip_tags: bool) -> None:
    size = (256, 256) if num_people == 30 else (128, 128)
    joints, heatmaps, tags = plant(num_people, size=size, flip_tags=flip_tags, seed=num_people)
    keypoints, scores = group_poses(heatmaps, tags)
    # Sub-pixel: the log-parabola vertex is exact on an isolated Gaussian.
    assert_recovered(keypoints, scores, joints, tol=0.05)
    np.testing.assert_allclose(scores, 1.0, atol=0.05)


def test_torch_input_matches_numpy() -> None:
    _, heatmaps, tags = plant(5, flip_tags=True)
    from_numpy = group_poses(heatmaps, tags)
    from_torch = group_poses(torch.from_numpy(heatmaps), torch.from_numpy(tags))
    # Views into larger maps (a padded batch's, cut to the image), as the predictor passes them.
    padded_heat = torch.nn.functional.pad(torch.from_numpy(heatmaps), (0, 9, 0, 5), value=1.0)
    padded_tags = torch.nn.functional.pad(torch.from_numpy(tags).movedim(-1, 0), (0, 9, 0, 5)).movedim(0, -1)
    height, width = heatmaps.shape[1:]
    from_views = group_poses(padded_heat[:, :height, :width], padded_tags[:, :height, :width])
    assert not padded_heat[:, :height, :width].is_contiguous()
    for a, b, c in zip(from_numpy, from_torch, from_views):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_quarter_pixel_adjust_is_the_reference_step() -> None:
    joints, heatmaps, tags = plant(3)
    keypoints, _ = group_poses(heatmaps, tags, subpixel="quarter")
    who = match_people(keypoints, joints)
    frac = keypoints[..., :2] - np.round(keypoints[..., :2])
    np.testing.assert_allclose(np.abs(frac), 0.25)
    assert np.abs(keypoints[..., :2] - joints[who]).max() <= 0.75 + 1e-6


def test_overlapping_people_separated_by_tags(rng) -> None:
    base = 64 + SKELETON
    # Every joint of B lies 3 px right and 3 px down of A's: inside a 7 px window of each other.
    joints = np.stack((base, base + np.array([3.0, 3.0]))) + rng.uniform(-0.3, 0.3, (2, 17, 2))
    heatmaps, tags = render(joints, np.array([0.0, 3.0]), (128, 128), rng)
    keypoints, scores = group_poses(heatmaps, tags)
    assert_recovered(keypoints, scores, joints, tol=0.35)


def test_empty_and_subthreshold_maps_give_no_poses(rng) -> None:
    for heatmaps in (np.zeros((17, 64, 64), np.float32), rng.uniform(0, 0.1, (17, 64, 64)).astype(np.float32)):
        keypoints, scores = group_poses(heatmaps, rng.normal(size=(17, 64, 64)))
        assert keypoints.shape == (0, 17, 3) and scores.shape == (0,)


def test_refine_fills_a_weak_joint_near_the_persons_tag(rng) -> None:
    joints = np.stack((40 + SKELETON, 90 + SKELETON))
    values = np.ones((2, 17))
    values[0, 9] = 0.08  # left wrist of person 0 below the detection threshold
    heatmaps, tags = render(joints, np.array([0.0, 4.0]), (128, 128), rng, values=values)
    keypoints, scores = group_poses(heatmaps, tags)
    who = match_people(keypoints, joints)
    p0 = keypoints[who == 0][0]
    assert p0[9, 2] == pytest.approx(0.08, abs=1e-3)
    assert np.linalg.norm(p0[9, :2] - joints[0, 9]) < 0.05
    # The score is the mean value of the joints found before refinement, as in the reference.
    assert scores[who == 0][0] == pytest.approx(16 / 17, abs=1e-3)
    unrefined, _ = group_poses(heatmaps, tags, refine=False)
    assert unrefined[match_people(unrefined, joints) == 0][0][9, 2] == 0


def test_split_person_is_a_redundant_pose_and_removed(rng) -> None:
    joints = (64 + SKELETON)[None]
    # Upper body (matched first) and lower body carry tags 2 apart: grouping makes two people, and
    # refinement completes both into the same pose (thesis 4.4.3).
    heatmaps, _ = render(joints, np.zeros(1), (128, 128), rng)
    tags = np.zeros((17, 128, 128), np.float32)
    tags[[7, 8, 9, 10, 13, 14, 15, 16]] = 2.0
    kept, _ = group_poses(heatmaps, tags)
    both, _ = group_poses(heatmaps, tags, redundant_distance=0)
    assert both.shape[0] == 2
    assert kept.shape[0] == 1
    assert np.linalg.norm(kept[0, :, :2] - joints[0], axis=-1).max() < 0.05


def test_max_people_keeps_the_strongest_people(rng) -> None:
    joints = people_on_grid(12, (128, 128), rng)
    strength = np.linspace(1.0, 0.5, 12)
    heatmaps, tags = render(joints, 2.0 * np.arange(12), (128, 128), rng, values=np.repeat(strength[:, None], 17, 1))
    keypoints, scores = group_poses(heatmaps, tags, max_people=5)
    assert keypoints.shape[0] == 5
    assert sorted(match_people(keypoints, joints).tolist()) == [0, 1, 2, 3, 4]


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        group_poses(np.zeros((17, 8, 8)), np.zeros((17, 8, 9)))
    with pytest.raises(ValueError):
        group_poses(np.zeros((8, 8)), np.zeros((8, 8)))


@pytest.mark.parametrize("flip_tags,levels,noisy", [(False, 0, 1.0), (True, 0, 1.0), (False, 4, 1.0), (True, 0, 0.03)])
def test_refine_shortlist_is_exact(monkeypatch, rng, flip_tags: bool, levels: int, noisy: float) -> None:
    # Noisy maps with many weak peaks and people missing joints: the shortlist shortcut must choose
    # the same pixels as the argmax over the whole map. Maps of a few levels tie on most pixels, so the
    # shortlist cannot be narrowed by a sampled floor and ties decide the pixel (the first, as argmax).
    # Noise on a few pixels (a trained model's maps) lets one pass find the NMS and the refine pixels.
    joints, heatmaps, tags = plant(8, size=(96, 96), flip_tags=flip_tags, seed=3)
    noise = rng.uniform(0, 0.3, heatmaps.shape) * (rng.uniform(0, 1, heatmaps.shape) < noisy)
    heatmaps = heatmaps * rng.uniform(0, 1, (17, 1, 1)).astype(np.float32) + noise.astype(np.float32)
    if levels:
        heatmaps = np.round(heatmaps * levels) / levels
    shortlists = []
    spied = grouping._strongest_pixels
    monkeypatch.setattr(grouping, "_strongest_pixels",
                        lambda maps, size, floor=None, pixels=None, rows=None: shortlists.append(pixels is not None)
                        or spied(maps, size, floor, pixels, rows))
    monkeypatch.setattr(grouping, "_REFINE_WHOLE_MAPS", 0)
    shortcut = group_poses(heatmaps, tags)
    monkeypatch.setattr(grouping, "_REFINE_SHORTLIST", 128)  # a floor sampled on every 3rd row and column
    monkeypatch.setattr(grouping, "_WHOLE_MAP_CHUNK", 2 * 96 * 96)  # whole maps searched two people at a time
    short_shortlist = group_poses(heatmaps, tags)
    assert shortlists == [noisy < 1] * 2  # found in the NMS pass where few pixels are strong
    monkeypatch.setattr(grouping, "_REFINE_SHORTLIST", 96 * 96)
    whole_shortlist = group_poses(heatmaps, tags)
    monkeypatch.setattr(grouping, "_REFINE_WHOLE_MAPS", 1 << 40)
    whole_map = group_poses(heatmaps, tags)
    assert shortcut[0].shape[0] > 8
    for found in (shortcut, short_shortlist, whole_shortlist):
        for a, b in zip(found, whole_map):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("flat_row", [False, True])
def test_strongest_pixels_keep_every_pixel_at_or_above_their_floor(rng, flat_row: bool) -> None:
    maps = torch.as_tensor(rng.uniform(0, 1, (4, 100, 200)) ** 4, dtype=torch.float32)
    maps[3] = torch.round(maps[3] * 3) / 3  # a few levels: many ties at the floor
    if flat_row:  # flat but for 21 pixels: a sampled floor would keep the whole map, so topk decides
        maps = torch.cat((maps, torch.full((1, 100, 200), 0.5)))
        maps[4].view(-1)[::997] = 0.9
    # A strided view, as a padded batch's maps cut to the image are: read where it lies.
    maps = torch.nn.functional.pad(maps, (0, 7, 0, 3))[:, :100, :200]
    indices, values, floor = grouping._strongest_pixels(maps, 512)
    for row in range(maps.shape[0]):
        kept = indices[row][values[row] > -np.inf]
        assert bool((kept[1:] > kept[:-1]).all())  # in pixel order
        assert torch.equal(values[row][: kept.numel()], maps[row].flatten()[kept])
        above = (maps[row].flatten() >= floor[row]).nonzero()[:, 0]
        assert bool(torch.isin(above, kept).all())  # nothing at or above the floor is left out
        if flat_row:  # topk's 512, the floor just above the 512th (row 3's 512th is its top level, tied)
            assert kept.numel() == 512 and above.numel() == {3: 0, 4: 21}.get(row, 511)
        else:  # the sampled floor: what lies at or above it, about 512
            assert torch.equal(above, kept) and 128 <= kept.numel() <= 4 * 512


def _reference_peaks(heatmaps: torch.Tensor, k: int, kernel: int, threshold: float) -> list:
    """Each joint's k strongest max-pool-NMS peaks above ``threshold``, strongest first: the reference's recipe."""
    pooled = torch.nn.functional.max_pool2d(heatmaps[None], kernel, stride=1, padding=kernel // 2)[0]
    peaks = (pooled == heatmaps) & (heatmaps > threshold)
    return [heatmaps[j][peaks[j]].sort(descending=True).values[:k] for j in range(heatmaps.shape[0])]


def _laid_out(maps: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values (J, H, W) as they reach grouping: contiguous (ONNX Runtime's), a channels-last batch's
    maps cut to the image (PyTorch's), or with columns before rows in memory."""
    if layout == "channels_last_cut":
        padded = torch.nn.functional.pad(maps, (0, 5, 0, 3))
        return padded.permute(1, 2, 0).contiguous().permute(2, 0, 1)[:, : maps.shape[1], : maps.shape[2]]
    if layout == "columns_first":
        return maps.transpose(1, 2).contiguous().transpose(1, 2)
    return maps


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_cut", "columns_first"])
def test_pixels_at_or_above_lists_them_as_nonzero_does(rng, layout: str) -> None:
    maps = torch.as_tensor(rng.uniform(0, 1, (17, 30, 44)) ** 6, dtype=torch.float32)
    maps[2, 5:9, 7] = 0.75  # ties with joint 2's bound
    low = torch.as_tensor(rng.uniform(0.3, 0.9, 17), dtype=torch.float32)
    low[2] = 0.75
    expected = (maps >= low[:, None, None]).nonzero(as_tuple=True)
    laid_out = _laid_out(maps, layout)
    found = grouping._pixels_at_or_above(laid_out, low, maps.numel())
    for column, want in zip(found, expected):
        assert torch.equal(column, want)
    assert torch.equal(found.value, maps[expected])
    assert grouping._pixels_at_or_above(laid_out, low, expected[0].numel() - 1) is None


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_cut", "columns_first"])
@pytest.mark.parametrize("share_above", [0.04, 0.5])
def test_peak_search_matches_max_pool_nms_on_sparse_and_dense_maps(rng, share_above: float, layout: str) -> None:
    # Maps with a few pixels above the threshold (a trained model's) and maps mostly above it (a random-weight
    # model's), however they lie in memory: the peaks, their order and their tags must be max-pool NMS's.
    heatmaps = torch.as_tensor(rng.uniform(0, 1, (17, 40, 56)), dtype=torch.float32)
    heatmaps = heatmaps * torch.as_tensor(rng.uniform(0, 1, heatmaps.shape) < share_above)
    heatmaps[3, 10:12, 20:22] = 0.95  # a plateau: each of its pixels is its window's maximum
    tags = torch.as_tensor(rng.normal(size=(17, 40, 56, 1)), dtype=torch.float32)
    vals, inds, tag_k = grouping._top_k(_laid_out(heatmaps, layout), tags, 30, 5, 0.1)
    for joint, expected in enumerate(_reference_peaks(heatmaps, 30, 5, 0.1)):
        found = expected.numel()
        torch.testing.assert_close(vals[joint, :found], expected, rtol=0, atol=0)
        assert bool((vals[joint, found:] == 0).all())
        torch.testing.assert_close(heatmaps[joint].view(-1)[inds[joint, :found]], expected, rtol=0, atol=0)
        torch.testing.assert_close(tag_k[joint, :found, 0], tags[joint].view(-1)[inds[joint, :found]])
    for kernel in (3, 5, 7):
        pooled = torch.nn.functional.max_pool2d(heatmaps[None], kernel, stride=1, padding=kernel // 2)[0]
        assert torch.equal(grouping._window_max(heatmaps, kernel), pooled)


def test_non_finite_tags_leave_those_joints_unmatched_instead_of_failing() -> None:
    """An untrained or diverged model can answer inf or NaN tags; the assignment must stay feasible."""
    joints, heatmaps, tags = plant(2, seed=2)
    tags = tags.copy()
    wrist = 9
    tags[wrist] = np.inf  # every left-wrist tag
    tags[wrist + 1] = np.nan  # and every right-wrist tag
    keypoints, scores = group_poses(heatmaps, tags)
    assert np.isfinite(scores).all() and keypoints.shape[1] == 17
    assert keypoints.shape[0] >= 2  # the people are still found from their other joints


def test_maps_that_require_grad_are_grouped_as_their_values() -> None:
    """A training step's outputs can be grouped directly, without the caller detaching them."""
    joints, heatmaps, tags = plant(3, seed=4)
    heat, tag = torch.as_tensor(heatmaps).requires_grad_(), torch.as_tensor(tags).requires_grad_()
    for a, b in zip(group_poses(heat, tag), group_poses(heatmaps, tags)):
        np.testing.assert_array_equal(a, b)
