"""mean_iou / ConfusionMatrix: hand-computed cases and equality with the official Cityscapes script."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
from cityscapesscripts.helpers.labels import labels as cs_labels
from cityscapesscripts.helpers.labels import trainId2label
from PIL import Image

from evaluation import mean_iou
from evaluation.seg_metrics import ConfusionMatrix

LABEL_TO_TRAIN = np.full(256, 255, np.uint8)
for _label in cs_labels:
    if _label.id >= 0 and 0 <= _label.trainId < 255:
        LABEL_TO_TRAIN[_label.id] = _label.trainId


def test_perfect_prediction_scores_one() -> None:
    labels = torch.randint(0, 19, (2, 16, 24))
    labels[0, :4] = 255
    result = mean_iou(labels.clone(), labels)
    assert result["mIoU"] == 1.0 and result["pixel_accuracy"] == 1.0


def test_hand_computed_confusion() -> None:
    # labels:  0 0 1 1 2 255     preds: 0 1 1 1 0 2
    labels = np.array([[0, 0, 1, 1, 2, 255]])
    preds = np.array([[0, 1, 1, 1, 0, 2]])
    result = mean_iou(preds, labels, num_classes=4)
    # class 0: tp 1, fn 1, fp 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: tp 0, fn 1 -> 0;
    # class 3: absent -> NaN, left out of the mean. The pixel under 255 counts nowhere.
    iou = result["per_class_iou"]
    assert iou[:3] == pytest.approx([1 / 3, 2 / 3, 0.0]) and math.isnan(iou[3])
    assert result["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert result["pixel_accuracy"] == pytest.approx(3 / 5)


def test_prediction_outside_classes_is_a_false_negative_only() -> None:
    result = mean_iou(np.array([255, 1]), np.array([0, 1]), num_classes=2)
    assert result["per_class_iou"] == [0.0, 1.0]


def test_streaming_equals_one_shot_and_logits_accepted() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 8, 8, generator=gen)
    labels = torch.randint(0, 5, (4, 8, 8), generator=gen)
    stream = ConfusionMatrix(num_classes=5)
    for i in range(4):
        stream.update(logits[i : i + 1], labels[i : i + 1])
    assert stream.compute() == mean_iou(logits.argmax(1), labels, num_classes=5)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError):
        mean_iou(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError):
        mean_iou(np.zeros((2, 2)), np.array([[0, 1], [26, 255]]))  # a label id, not a train id


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_accumulates_on_gpu() -> None:
    labels = torch.randint(0, 19, (2, 32, 32), device="cuda")
    matrix = ConfusionMatrix()
    matrix.update(labels, labels)
    assert matrix.matrix.is_cuda and matrix.compute()["mIoU"] == 1.0


def official_args() -> official.CArgs:
    args = official.CArgs()
    args.__dict__.update(vars(official.args))
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    return args


def test_equals_official_cityscapes_evaluation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train_to_label = np.array([trainId2label[t].id for t in range(19)])
    # Ground truth uses label ids, ignored ones (0 unlabeled, 1 ego vehicle, 4 static, 5 dynamic) too.
    gt_ids = np.concatenate((train_to_label[:17], [0, 1, 4, 5]))  # classes 17, 18 never labelled
    gt_paths, pred_paths, preds, labels = [], [], [], []
    for i in range(3):
        gt = rng.choice(gt_ids, (6, 8)).repeat(5, 0).repeat(5, 1).astype(np.uint8)
        pred = gt.copy()
        flip = rng.random(gt.shape) < 0.3
        pred[flip] = rng.choice(train_to_label[:18], flip.sum())  # class 17 predicted, never labelled
        pred[rng.random(gt.shape) < 0.05] = 0  # predicted as an ignored label
        for array, folder, paths in ((gt, "gt", gt_paths), (pred, "pred", pred_paths)):
            path = tmp_path / folder / f"city_{i:06d}_000019_gtFine_labelIds.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(array).save(path)
            paths.append(str(path))
        preds.append(LABEL_TO_TRAIN[pred])
        labels.append(LABEL_TO_TRAIN[gt])

    reference = official.evaluateImgLists(pred_paths, gt_paths, official_args())
    ours = mean_iou(np.stack(preds), np.stack(labels))

    expected = [reference["classScores"][trainId2label[t].name] for t in range(19)]
    np.testing.assert_allclose(ours["per_class_iou"], expected, rtol=0, atol=1e-12)
    assert math.isnan(expected[18]) and expected[17] == 0.0  # the cases differ from the plain ones
    assert ours["mIoU"] == pytest.approx(reference["averageScoreClasses"], abs=1e-12)
