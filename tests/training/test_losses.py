"""Ground-truth losses on hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from mtl_ehrnet.training import GroundTruthLoss
from mtl_ehrnet.training.pose_loss import associative_embedding, heatmap_mse
from mtl_ehrnet.training.seg_loss import segmentation_ce


def test_heatmap_mse_is_masked_mean() -> None:
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.ones(1, 2, 2, 2)
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    # Only pixel (0, 0) of both channels counts: 2 squared errors of 1 over 2*2*2 entries.
    assert heatmap_mse(pred, target, mask).item() == 2 / 8


def _joints(people):  # list of lists of (index, visible)
    joints = torch.zeros(1, 4, 2, 2, dtype=torch.long)
    for m, person in enumerate(people):
        for k, (index, visible) in enumerate(person):
            joints[0, m, k] = torch.tensor([index, visible])
    return joints


def test_associative_embedding_hand_case() -> None:
    tags = torch.zeros(1, 2, 1, 4)  # K=2 joints, a 1x4 map
    tags[0, 0] = torch.tensor([1.0, 3.0, 0.0, 0.0])
    tags[0, 1] = torch.tensor([0.0, 0.0, 2.0, 5.0])
    # person A: joint0 at x=0 (tag 1), joint1 at x=2 (tag 2) -> mean 1.5, spread 0.25
    # person B: joint0 at x=1 (tag 3), joint1 at x=3 (tag 5) -> mean 4, spread 1
    pull, push = associative_embedding(tags, _joints([[(0, 1), (2, 1)], [(1, 1), (3, 1)]]))
    assert math.isclose(pull.item(), (0.25 + 1.0) / 2, rel_tol=1e-6)
    expected_push = (2 + 2 * math.exp(-(1.5 - 4.0) ** 2) - 2) / (2 * 1) * 0.5
    assert math.isclose(push.item(), expected_push, rel_tol=1e-6)


def test_max_push_hand_case() -> None:
    tags = torch.zeros(1, 2, 1, 4)
    tags[0, 0] = torch.tensor([1.0, 1.3, 0.0, 0.0])
    tags[0, 1] = torch.tensor([0.0, 0.0, 1.0, 1.3])
    # person means 1.0 and 1.3: each ordered pair adds max(0, 1 - 0.3) = 0.7; 2 * 0.7 / (2 * 1) * 0.5
    _, push = associative_embedding(tags, _joints([[(0, 1), (2, 1)], [(1, 1), (3, 1)]]), push_kind="max")
    assert math.isclose(push.item(), 0.35, rel_tol=1e-6)
    tags[0, :, 0, 1] += 2.0  # people a full unit apart push no more
    _, push = associative_embedding(tags, _joints([[(0, 1), (2, 1)], [(1, 1), (3, 1)]]), push_kind="max")
    assert push.item() == 0


def test_only_the_max_push_separates_near_equal_tags() -> None:
    """The heads start with near-equal tags, where exp(-d^2) has almost no gradient and max(0, 1-|d|) a full one."""
    joints = _joints([[(0, 1), (2, 1)], [(1, 1), (3, 1)]])
    gradients = {}
    for kind in ("exp", "max"):
        tags = torch.tensor([[[[0.0, 1e-3, 0.0, 0.0]], [[0.0, 0.0, 0.0, 1e-3]]]], requires_grad=True)
        associative_embedding(tags, joints, push_kind=kind)[1].sum().backward()
        gradients[kind] = tags.grad.abs().max().item()
    assert gradients["exp"] < 1e-3 and gradients["max"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="push_kind must be one of"):
        associative_embedding(tags, joints, push_kind="hinge")


def test_associative_embedding_no_person_and_one_person_are_zero_not_nan() -> None:
    tags = torch.randn(1, 2, 1, 4, requires_grad=True)
    pull, push = associative_embedding(tags, _joints([]))
    assert pull.item() == 0 and push.item() == 0
    pull, push = associative_embedding(tags, _joints([[(0, 1), (3, 0)]]))
    assert pull.item() == 0 and push.item() == 0
    (pull + push).sum().backward()
    assert torch.isfinite(tags.grad).all()


def test_invisible_joints_do_not_count() -> None:
    tags = torch.zeros(1, 2, 1, 4)
    tags[0, 1, 0, 3] = 10.0
    pull, _ = associative_embedding(tags, _joints([[(0, 1), (3, 0)]]))
    assert pull.item() == 0


def test_segmentation_ce_ignores_255_and_upsamples() -> None:
    logits = torch.zeros(1, 3, 1, 1)
    logits[0, 1] = 2.0
    labels = torch.tensor([[[1, 255], [0, 255]]])
    loss = segmentation_ce(logits, labels)
    p1 = math.exp(2) / (math.exp(2) + 2)
    p0 = 1 / (math.exp(2) + 2)
    assert math.isclose(loss.item(), (-math.log(p1) - math.log(p0)) / 2, rel_tol=1e-5)
    assert segmentation_ce(logits, torch.full((1, 2, 2), 255)).item() == 0


def test_ohem_keeps_only_hard_pixels() -> None:
    logits = torch.tensor([[[[5.0, -5.0]], [[-5.0, 5.0]]]])  # (1, 2, 1, 2)
    labels = torch.tensor([[[0, 0]]])  # pixel 0 easy, pixel 1 hard
    hard = segmentation_ce(logits, labels, ohem_threshold=0.7, ohem_min_kept=1)
    full = segmentation_ce(logits, labels)
    assert hard.item() > full.item()
    assert math.isclose(
        hard.item(), torch.nn.functional.cross_entropy(logits[..., 1:], labels[..., 1:]).item(), rel_tol=1e-5
    )


def test_ground_truth_loss_only_counts_labelled_images() -> None:
    loss = GroundTruthLoss(("pose", "seg"))
    outputs = {
        "heatmaps": torch.ones(2, 17, 8, 8),
        "heatmaps_lr": torch.ones(2, 17, 4, 4),
        "tags": torch.zeros(2, 17, 4, 4),
        "seg": torch.zeros(2, 19, 4, 4),
    }
    batch = {
        "has_pose": torch.tensor([True, False]),
        "heatmaps": torch.zeros(2, 17, 8, 8),
        "heatmaps_lr": torch.zeros(2, 17, 4, 4),
        "masks": torch.ones(2, 8, 8),
        "masks_lr": torch.ones(2, 4, 4),
        "joints": torch.zeros(2, 30, 17, 2, dtype=torch.long),
        "seg": torch.full((2, 16, 16), 255),
    }
    terms = loss(outputs, batch)
    assert set(terms) == {"pose/heatmaps", "pose/heatmaps_lr", "pose/pull", "pose/push", "seg/ce"}
    assert terms["pose/heatmaps"].item() == 1.0  # the mean over the one labelled image, not diluted by two
    assert terms["seg/ce"].item() == 0.0


def test_class_weighted_ce_is_the_weighted_mean() -> None:
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, 0, 0, 0] = 2.0  # pixel 0: class 0 confident
    labels = torch.tensor([[[0, 1, 1, 255]]])
    weights = torch.tensor([1.0, 3.0, 5.0])
    per_pixel = [math.log(1 + 2 * math.exp(-2.0)), math.log(3.0), math.log(3.0)]
    expected = (1.0 * per_pixel[0] + 3.0 * per_pixel[1] + 3.0 * per_pixel[2]) / 7.0
    assert segmentation_ce(logits, labels, class_weights=weights).item() == pytest.approx(expected, rel=1e-6)
    assert segmentation_ce(logits, labels).item() == pytest.approx(sum(per_pixel) / 3, rel=1e-6)


def test_median_frequency_weights_favour_rare_classes(tmp_path) -> None:
    from PIL import Image

    from mtl_ehrnet.training.class_weights import count_train_ids, median_frequency_weights

    # label ids 7 (road, train id 0), 8 (sidewalk, 1), 17 (pole, 5); id 0 (unlabeled) is ignored.
    ids = np.full((10, 10), 7, np.uint8)
    ids[:3] = 8
    ids[0, :2] = 17
    ids[9, 9] = 0
    path = tmp_path / "a_gtFine_labelIds.png"
    Image.fromarray(ids).save(path)
    counts = count_train_ids([path])
    assert counts[0] == 69 and counts[1] == 28 and counts[5] == 2 and counts.sum() == 99
    weights = median_frequency_weights(counts, max_weight=10.0)
    assert weights[1] == pytest.approx(1.0)  # the median class
    assert weights[0] == pytest.approx(28 / 69)
    assert weights[5] == pytest.approx(10.0)  # 14x, clipped
    assert weights[2] == 1.0  # absent


def test_ground_truth_loss_builder(synth) -> None:
    from mtl_ehrnet.training.task_loss import ground_truth_loss

    loss = ground_truth_loss(
        ("pose", "seg"), ae_weight=0.01, class_weights="median", ohem=0.7, cityscapes=synth.cityscapes_root
    )
    assert loss.class_weights is not None and loss.class_weights.shape == (19,) and loss.ohem_threshold == 0.7
    assert loss.weights.pull == loss.weights.push == 0.01 and loss.push_kind == "exp"
    assert ground_truth_loss(("pose",), ae_push="max").push_kind == "max"
    with pytest.raises(ValueError, match=r"push \(--ae-push\) must be one of \('exp', 'max'\), got 'hinge'"):
        ground_truth_loss(("pose",), ae_push="hinge")
    assert ground_truth_loss(("pose",), class_weights="median").class_weights is None  # no seg head, nothing to count
    with pytest.raises(ValueError, match="class_weights must be one of"):
        ground_truth_loss(("seg",), class_weights="inverse")
    with pytest.raises(ValueError, match="Cityscapes train split"):
        ground_truth_loss(("seg",), class_weights="median")
