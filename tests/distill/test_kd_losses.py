"""Distillation losses: zero at equality, hand-computed values, gradients to the student only."""
import math

import pytest
import torch

from distill.balancing import DynamicWeightAverage, FixedWeights, UncertaintyWeighting
from distill.hints import FeatureHints
from distill.pose_kd import heatmap_kd, pseudo_joints, tag_kd_pseudo, tag_kd_relational
from distill.seg_kd import channel_wise, pixel_kl


def _pose(b=2, k=3, h=8, w=8):
    return {"heatmaps": torch.rand(b, k, 2 * h, 2 * w), "heatmaps_lr": torch.rand(b, k, h, w),
            "tags": torch.randn(b, k, h, w)}


def test_heatmap_kd_zero_at_equality_and_hand_value() -> None:
    teacher = _pose()
    assert heatmap_kd(teacher, teacher).abs().max() == 0
    student = {k: v + 0.5 for k, v in teacher.items()}
    torch.testing.assert_close(heatmap_kd(student, teacher), torch.full((2,), 0.5))  # 0.25 at each resolution


def test_pixel_kl_zero_at_equality_and_hand_value() -> None:
    logits = torch.randn(2, 4, 3, 3)
    assert pixel_kl(logits, logits).abs().max() < 1e-6
    teacher = torch.zeros(1, 2, 1, 1)
    teacher[0, 0] = math.log(3.0)  # p_t = (0.75, 0.25)
    student = torch.zeros(1, 2, 1, 1)  # p_s = (0.5, 0.5)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert math.isclose(pixel_kl(student, teacher).item(), expected, rel_tol=1e-5)
    # Temperature: logits / T, then x T^2.
    t = 2.0
    p = torch.softmax(torch.tensor([math.log(3.0) / t, 0.0]), 0)
    expected_t = (p[0] * math.log(p[0] / 0.5) + p[1] * math.log(p[1] / 0.5)).item() * t * t
    assert math.isclose(pixel_kl(student, teacher, temperature=t).item(), expected_t, rel_tol=1e-5)


def test_pixel_kl_resizes_teacher_and_honours_mask() -> None:
    student = torch.randn(1, 3, 4, 4)
    teacher = torch.nn.functional.interpolate(student, size=(8, 8), mode="bilinear", align_corners=False)
    assert pixel_kl(student, teacher).shape == (1,)
    mask = torch.zeros(1, 4, 4)
    assert pixel_kl(student, torch.randn(1, 3, 4, 4), mask=mask).item() == 0


def test_channel_wise_zero_at_equality_positive_otherwise() -> None:
    logits = torch.randn(2, 5, 4, 4)
    assert channel_wise(logits, logits).abs().max() < 1e-6
    assert (channel_wise(torch.randn(2, 5, 4, 4), logits) > 0).all()


def _peaks(b=1, k=2, h=8, w=8):
    heat = torch.zeros(b, k, h, w)
    tags = torch.zeros(b, k, h, w)
    for person, (y, x, tag) in enumerate([(2, 2, 0.0), (5, 6, 3.0)]):
        for j in range(k):
            heat[0, j, y, x + j % 2] = 0.9
            tags[0, j, y, x + j % 2] = tag
    return heat, tags


def test_pseudo_joints_recover_confident_teacher_people() -> None:
    heat, tags = _peaks()
    joints = pseudo_joints(heat, tags, min_score=0.3)
    people = joints[0][joints[0, :, :, 1].sum(dim=1) > 0]
    assert len(people) == 2
    assert sorted(people[:, 0, 0].tolist()) == [2 * 8 + 2, 5 * 8 + 6]
    assert pseudo_joints(heat * 0.1, tags, min_score=0.3)[..., 1].sum() == 0  # nothing confident


def test_tag_kd_pseudo_zero_when_student_tags_match_grouping() -> None:
    heat, tags = _peaks()
    teacher = {"heatmaps_lr": heat, "tags": tags}
    loss = tag_kd_pseudo(tags * 10, teacher)  # widely separated, constant per person: pull 0, push ~0
    assert loss.item() < 1e-6
    student = torch.zeros_like(tags, requires_grad=True)  # everyone has the same tag: push is maximal
    bad = tag_kd_pseudo(student, teacher)
    assert bad.item() > 0.4
    bad.sum().backward()
    assert student.grad is not None


def test_tag_kd_pseudo_max_push_moves_near_equal_tags() -> None:
    heat, tags = _peaks()
    teacher = {"heatmaps_lr": heat, "tags": tags}
    gradients = {}
    for kind in ("exp", "max"):
        student = (tags * 1e-3).requires_grad_()  # the near-equal tags of a freshly initialised head
        tag_kd_pseudo(student, teacher, push_kind=kind).sum().backward()
        gradients[kind] = student.grad.abs().max().item()
    assert gradients["max"] > 100 * gradients["exp"]


def test_tag_kd_relational_is_shift_invariant() -> None:
    heat, tags = _peaks()
    assert tag_kd_relational(tags + 7.0, tags, heat).item() == 0
    assert tag_kd_relational(torch.zeros_like(tags), tags, heat).item() > 0


def test_feature_hints_zero_for_equal_features_and_gradients_reach_adapters() -> None:
    hints = FeatureHints([4, 6], [4, 8])
    features = [torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)]
    teacher = [features[0].clone(), torch.randn(2, 8, 4, 4)]
    loss = hints(features, teacher)
    assert loss.shape == (2,)
    single = FeatureHints([4], [4])
    assert single([features[0]], [features[0]]).abs().max() < 1e-6
    loss.sum().backward()
    assert all(p.grad is not None for p in hints.parameters())
    with pytest.raises(ValueError, match="as many teacher branches"):
        FeatureHints([4], [4, 8])


def test_balancers() -> None:
    terms = {"pose/gt": torch.tensor(2.0), "seg/kd": torch.tensor(4.0)}
    fixed = FixedWeights({"seg/kd": 0.5})
    assert {k: v.item() for k, v in fixed(terms).items()} == {"pose/gt": 2.0, "seg/kd": 2.0}
    uncertainty = UncertaintyWeighting(list(terms))
    out = uncertainty(terms)
    assert {k: v.item() for k, v in out.items()} == {"pose/gt": 2.0, "seg/kd": 4.0}  # s = 0 at start
    sum(out.values()).backward()
    assert uncertainty.log_vars.grad.tolist() == [1 - 2.0, 1 - 4.0]  # d/ds (e^-s L + s) = 1 - L
    dwa = DynamicWeightAverage(list(terms), temperature=1.0)
    for epoch_terms in ({"pose/gt": 1.0, "seg/kd": 1.0}, {"pose/gt": 0.5, "seg/kd": 1.0}):
        dwa({k: torch.tensor(v) for k, v in epoch_terms.items()})
        dwa.end_epoch()
    ratio = torch.tensor([0.5, 1.0])
    torch.testing.assert_close(dwa.weights, 2 * torch.softmax(ratio, 0))
    assert dwa.weights[1] > dwa.weights[0]  # the term that stopped improving gets more weight
