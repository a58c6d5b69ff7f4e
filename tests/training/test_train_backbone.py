"""Classifier pretraining (``train-backbone``): recipe, top-k metrics, a tiny run and the backbone transfer."""
import json
from pathlib import Path

import pytest
import torch

from mtl_ehrnet import create_model, load_backbone_weights
from mtl_ehrnet.checkpoint import read_checkpoint, save_checkpoint
from mtl_ehrnet.cli import main
from mtl_ehrnet.data.synthetic_classes import generate_synthetic_classes
from mtl_ehrnet.models import load_classifier
from mtl_ehrnet.training.classify import ClassificationLoss, topk_correct
from mtl_ehrnet.training.optim import build_optimizer, build_scheduler
from mtl_ehrnet.training.run_config import classifier_recipe
from teachers import build_teacher


def test_recipe_is_the_thesis_schedule() -> None:
    config = classifier_recipe()
    assert (config.optimizer, config.lr, config.weight_decay, config.warmup_epochs) == ("sgd", 0.05, 1e-4, 5)
    assert config.milestones == (35, 65, 95, 125, 155, 185)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=1)
    lrs = []
    for _ in range(70):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[4] == pytest.approx(0.05)  # linear warm-up over 5 epochs
    assert lrs[34] == pytest.approx(0.05) and lrs[35] == pytest.approx(0.005) and lrs[65] == pytest.approx(0.0005)


def test_topk_and_loss() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0]])
    labels = torch.tensor([1, 3, 0])
    assert topk_correct(logits, labels, (1, 2, 5)) == {1: 1, 2: 2, 5: 3}
    ce = ClassificationLoss()({"logits": logits}, {"label": labels})["ce"]
    torch.testing.assert_close(ce, torch.nn.functional.cross_entropy(logits, labels))


@pytest.mark.parametrize("layout", ["imagefolder", "cifar"])
def test_a_tiny_run_writes_a_checkpoint_that_initialises_pose_h_minus_4(
    tmp_path: Path, layout: str, capsys: pytest.CaptureFixture
) -> None:
    data = generate_synthetic_classes(tmp_path / "data", classes=3, images_per_class=4, size=32, layout=layout)
    out = tmp_path / "run"
    argv = [
        "train-backbone",
        "--data",
        str(data),
        "--phi",
        "-4",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--set",
        "data.input_size=32",
        "--set",
        "run.warmup_epochs=0",
    ]
    assert main(argv) == 0
    first = (out / "config.yaml").read_text()
    assert "top-1" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    (val,) = [r for r in records if r["kind"] == "val"]
    assert 0.0 <= val["top1"] <= val["top5"] <= 1.0 and val["samples"] == 3  # 1 val/test image per class
    state = read_checkpoint(out / "last.pt")
    assert state["config"]["phi"] == -4 and state["config"]["num_classes"] == (3 if layout == "imagefolder" else 100)
    classifier = load_classifier(out / "last.pt")
    pose = create_model("pose_h-4")
    report = load_backbone_weights(pose.backbone, out / "last.pt")
    assert report.missing == [] and len(report.loaded) == len(pose.backbone.state_dict())
    torch.testing.assert_close(pose.backbone.state_dict(), classifier.backbone.state_dict())
    if layout == "imagefolder":  # the run's own config.yaml trains the same weights again
        again = tmp_path / "again"
        assert main(["train-backbone", "--config", str(out / "config.yaml"), "--out", str(again)]) == 0
        assert (again / "config.yaml").read_text() == first
        torch.testing.assert_close(read_checkpoint(again / "last.pt")["model"], state["model"], rtol=0, atol=0)


def test_train_teacher_takes_the_classifier_as_backbone(tmp_path: Path) -> None:
    classifier = create_model("efficientnet_b-4", num_classes=3)
    with torch.no_grad():
        next(classifier.backbone.parameters()).fill_(0.5)
    path = save_checkpoint(tmp_path / "b-4.pt", classifier)
    teacher = build_teacher("seg", "seg_h-4", backbone_weights=path)
    torch.testing.assert_close(teacher.backbone.state_dict(), classifier.backbone.state_dict())
    with pytest.raises(ValueError, match="phi=-4.*pose_h-3 has an EfficientNet backbone with phi=-3"):
        build_teacher("pose", "pose_h-3", backbone_weights=path)
