"""Teachers stay frozen inside a training parent; smp teachers honour the output contract."""
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import save_checkpoint
from teachers import SmpConfig, SmpSegmentationTeacher, build_teacher, load_teacher


class _Parent(nn.Module):
    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.student = nn.Conv2d(3, 3, 1)
        self.teacher = teacher


def test_teacher_stays_frozen_in_a_training_parent(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4"))
    teacher = load_teacher(path)
    parent = _Parent(teacher).train()
    assert parent.training and parent.student.training
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    bn = next(m for m in teacher.modules() if isinstance(m, nn.BatchNorm2d))
    running = bn.running_mean.clone()
    images = torch.randn(2, 3, 64, 64, requires_grad=True)
    out = teacher(images)
    assert torch.equal(bn.running_mean, running), "BN statistics of a teacher must not move"
    assert not out["heatmaps"].requires_grad


def test_smp_teacher_contract_and_checkpoint(tmp_path: Path) -> None:
    teacher = build_teacher("seg", "smp:Unet:resnet18", input_size=64, num_classes=5)
    assert isinstance(teacher, SmpSegmentationTeacher) and teacher.config == SmpConfig(
        "Unet", "resnet18", 5, (64, 64), "smp:Unet:resnet18"
    )
    out = teacher(torch.randn(2, 3, 64, 96))
    assert out["seg"].shape == (2, 5, 16, 24)
    loaded = load_teacher(save_checkpoint(tmp_path / "smp.pt", teacher))
    images = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded(images)["seg"], teacher.eval()(images)["seg"])


def test_wrong_teacher_for_task() -> None:
    with pytest.raises(ValueError, match="single-task pose model"):
        build_teacher("pose", "mtl_h-4")
    with pytest.raises(ValueError, match="segmentation model"):
        build_teacher("pose", "smp:Unet:resnet18")
    with pytest.raises(ValueError, match="smp:ARCH:ENCODER"):
        build_teacher("seg", "smp:Unet")
