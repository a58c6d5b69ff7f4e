"""The teacher cache under torchrun (2 gloo processes): each entry is computed once, by one rank, and the cache
equals a single process's; on a GPU the cache is built where the teachers are moved, the training device."""
import json
from pathlib import Path
from typing import Dict

import pytest
import torch
import torch.nn.functional as F
from gloo_ranks import run_ranks
from torch import nn

from distill.cache_codec import QUANTISED_KEYS, SCALE, dequantise, unpack
from distill.teacher_cache import TeacherCache, build_on_ranks
from mtl_ehrnet.data import CocoKeypoints, SyntheticLayout, TrainTransform
from mtl_ehrnet.training import distributed

SIZES = (64, 96)
IDENTITY = {"teacher": "counting"}


class CountingTeacher(nn.Module):
    """A tiny teacher with weights (so its device matters) that counts the images it answers."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Conv2d(3, 17 + 17 + 19, 1)
        self.seen = 0

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        self.seen += images.shape[0]
        maps = self.head(F.avg_pool2d(images, 4))
        return {"heatmaps": F.interpolate(maps[:, :17], scale_factor=2.0), "heatmaps_lr": maps[:, :17],
                "tags": maps[:, 17:34], "seg": maps[:, 34:]}


def _pose(images: str, annotations: str) -> CocoKeypoints:
    return CocoKeypoints(images, annotations, TrainTransform(64))


def _build(rank: int, images: str, annotations: str, root: str) -> None:
    context = distributed.setup("cpu")
    teacher = CountingTeacher()
    cache = TeacherCache(root, {"both": teacher}, SIZES, IDENTITY, mirrored=True)
    built = build_on_ranks(cache, {"pose": _pose(images, annotations)}, context, batch_size=2)
    (Path(root) / f"rank{rank}.json").write_text(json.dumps({"built": built, "seen": teacher.seen}))


def _entries(root: Path) -> Dict[str, Dict[str, torch.Tensor]]:
    return {str(p.relative_to(root)): unpack(torch.load(p, weights_only=True)) for p in sorted(root.rglob("*.pt"))}


def test_ranks_share_the_cache_build(synth: SyntheticLayout, tmp_path: Path) -> None:
    images, annotations = str(synth.coco_images("train")), str(synth.coco_annotations("train"))
    assert run_ranks(_build, images, annotations, str(tmp_path / "ranks")) == [0, 0]
    single = TeacherCache(tmp_path / "one", {"both": CountingTeacher()}, SIZES, IDENTITY, mirrored=True)
    expected = single.build(_pose(images, annotations), "pose", batch_size=2, progress=False)
    assert expected == len(_pose(images, annotations)) * len(SIZES) * 2
    reports = [json.loads((tmp_path / "ranks" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["built"] for r in reports] == [expected, expected]  # every rank returns once all is built
    # once each, plus rank 0's pass over one image per size for the projected size it prints first
    assert sum(r["seen"] for r in reports) == expected + len(SIZES) and min(r["seen"] for r in reports) > 0
    ranks, one = _entries(tmp_path / "ranks"), _entries(tmp_path / "one")
    assert ranks.keys() == one.keys() and len(one) == expected
    for name, entry in one.items():  # equal up to the float rounding of other batches and thread counts
        assert ranks[name].keys() == entry.keys(), name
        for key in QUANTISED_KEYS:
            if key in entry:
                step = entry[key + SCALE][:, 1, None, None]
                ours, theirs = (dequantise(ranks[name][key], ranks[name][key + SCALE]),
                                dequantise(entry[key], entry[key + SCALE]))
                assert ((ours - theirs).abs() <= 1.01 * step + 1e-5).all(), (name, key)  # one rounding step at most
    manifest = json.loads((tmp_path / "ranks" / "manifest.json").read_text())
    assert manifest == {**single.identity, "datasets": {"pose": _pose(images, annotations).fingerprint()}}
    assert not list((tmp_path / "ranks").rglob("*.tmp"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cache_builds_on_the_training_gpu(synth: SyntheticLayout, tmp_path: Path) -> None:
    teacher = CountingTeacher()  # on the CPU, as teachers.load_teacher leaves it
    cache = TeacherCache(tmp_path, {"both": teacher}, 64, IDENTITY)
    context = distributed.Context(rank=0, world=1, local_rank=0, device=torch.device("cuda", 0))
    pose = _pose(str(synth.coco_images("train")), str(synth.coco_annotations("train")))
    assert build_on_ranks(cache, {"pose": pose}, context, batch_size=2) == len(pose)
    assert teacher.head.weight.device == context.device
    assert cache.load("pose", 0)["heatmaps"].device.type == "cpu"
