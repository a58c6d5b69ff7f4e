"""A flip-averaged teacher: heatmaps and logits averaged with the mirrored pass, tags from the plain one."""
import torch
from torch import nn

from mtl_ehrnet.data.skeleton import COCO_FLIP_INDEX
from mtl_ehrnet.inference.predictor import mirror_average
from teachers import FrozenTeacher
from teachers.flip_average import FlipAveragedTeacher


class _ScaledChannels(nn.Module):
    """Joint channel k is k x the gray image; segmentation logits are gray + the column index; tags are the
    column index; the trunk is the image itself."""

    tasks = ("pose", "seg")

    def forward(self, images: torch.Tensor, return_features: bool = False) -> dict:
        gray = images.mean(dim=1, keepdim=True)
        scale = torch.arange(17, dtype=gray.dtype).view(1, 17, 1, 1)
        columns = torch.arange(images.shape[-1], dtype=gray.dtype).expand_as(gray)
        out = {"heatmaps": gray * scale, "heatmaps_lr": 2 * gray * scale, "tags": columns.expand(-1, 17, -1, -1),
               "seg": (gray + columns).expand(-1, 3, -1, -1)}
        if return_features:
            out["trunk"] = [images, images[..., ::2]]
        return out


def test_flip_average_matches_hand_computed_maps() -> None:
    images = torch.rand(2, 3, 4, 6)
    gray = images.mean(dim=1, keepdim=True)
    out = FlipAveragedTeacher(FrozenTeacher(_ScaledChannels()))(images, return_features=True)
    # The mirrored pass, turned back, puts flip_index[k] x gray in joint channel k.
    expected = gray * (torch.arange(17.0) + torch.tensor(COCO_FLIP_INDEX, dtype=torch.float32)).view(1, 17, 1, 1) / 2
    torch.testing.assert_close(out["heatmaps"], expected)
    torch.testing.assert_close(out["heatmaps_lr"], 2 * expected)
    assert torch.equal(out["heatmaps"][:, 0], torch.zeros_like(gray[:, 0]))  # the nose is its own mirror
    torch.testing.assert_close(out["heatmaps"][:, 1], out["heatmaps"][:, 2])  # left and right eye: (1 + 2) / 2 each
    # Columns u and 5 - u average to 2.5 everywhere.
    torch.testing.assert_close(out["seg"], (gray + 2.5).expand(-1, 3, -1, -1))
    assert torch.equal(out["tags"], torch.arange(6.0).expand(2, 17, 4, 6))  # the plain pass's tags
    assert [f.shape[0] for f in out["trunk"]] == [2, 2] and torch.equal(out["trunk"][0], images)


def test_mirror_average_of_a_mirror_symmetric_map_is_the_map() -> None:
    maps = torch.rand(1, 2, 3, 4)
    symmetric = maps + maps.flip(-1)
    torch.testing.assert_close(mirror_average(symmetric, symmetric), symmetric)
    torch.testing.assert_close(mirror_average(maps, maps, torch.tensor([1, 0])), (maps + maps.flip(-1)[:, [1, 0]]) / 2)


class _SegNet(nn.Module):
    tasks = ("seg",)

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, images: torch.Tensor) -> dict:
        return {"seg": self.bn(self.conv(images))}


def test_flip_averaged_teacher_stays_frozen_in_a_training_parent() -> None:
    teacher = FlipAveragedTeacher(FrozenTeacher(_SegNet()))
    parent = nn.ModuleDict({"student": nn.Conv2d(3, 3, 1), "teacher": teacher}).train()
    assert parent["student"].training and not any(m.training for m in teacher.modules())
    running = teacher.model.bn.running_mean.clone()
    out = teacher(torch.randn(2, 3, 8, 8, requires_grad=True))
    assert torch.equal(teacher.model.bn.running_mean, running), "BN statistics of a teacher must not move"
    assert not out["seg"].requires_grad and out["seg"].shape == (2, 3, 8, 8)
    assert teacher.tasks == ("seg",)
