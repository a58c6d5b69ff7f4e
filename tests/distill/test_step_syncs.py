"""A distillation training step reads nothing back from the device outside logging steps, except the one copy
of the teacher maps that online pseudo-keypoint tag targets are grouped from.

On the CPU nothing waits, so the test counts the calls that would wait on a GPU: ``item``, ``tolist``,
``cpu``, ``numpy``, ``float()``, ``int()`` and ``bool()`` of a tensor, made between two batches (the data
loader's own work on host tensors is left out). Boolean selections (``t[mask]``) also wait on a GPU without
any of these calls; the losses use masks instead, which this count cannot see (``tools/gpu_check.sh`` runs the
CUDA variant below, where PyTorch reports every wait).
"""
from pathlib import Path
from typing import Dict, List, Set

import pytest
import torch

import distill.pose_kd
from distill.objective import DistillationObjective, KDSettings
from distill.teacher_cache import CachedTeacherDataset, TeacherCache
from distill.teacher_sources import CachedTeachers
from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import save_checkpoint
from mtl_ehrnet.data import Cityscapes, CocoKeypoints, MixedTaskDataset, SyntheticLayout, TrainTransform
from mtl_ehrnet.training import RunConfig, fit
from teachers import FrozenTeacher, load_teacher

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")
STEPS = 5


class SyncCounter:
    """Counts device read-backs per training step; a step starts when the loader has handed over its batch.

    Work on host tensors is not counted: the loader's, and the pose grouping's when it runs on a copy that
    ``cpu()`` made (that copy is counted); grouping called on anything else counts one read-back per call.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.per_step: List[int] = [0]
        self.on_host = False
        self.host_copies: Set[int] = set()
        for name in READS:
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, getattr(torch.Tensor, name)))
        base = torch.utils.data.dataloader._BaseDataLoaderIter
        monkeypatch.setattr(base, "__next__", self._host_side(base.__next__, new_step=True))
        monkeypatch.setattr(distill.pose_kd, "group_poses", self._host_side(distill.pose_kd.group_poses))

    def _counting(self, name: str, read):  # noqa: ANN001, ANN202
        def counted(tensor, *args, **kwargs):  # noqa: ANN001, ANN202
            if not self.on_host:
                self.per_step[-1] += 1
            result = read(tensor, *args, **kwargs)
            if name == "cpu":
                self.host_copies.add(result.untyped_storage().data_ptr())
            return result

        return counted

    def _host_side(self, work, new_step: bool = False):  # noqa: ANN001, ANN202
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            first = args[0] if args else None
            if isinstance(first, torch.Tensor) and first.untyped_storage().data_ptr() not in self.host_copies:
                self.per_step[-1] += 1
            self.on_host = True
            try:
                return work(*args, **kwargs)
            finally:
                self.on_host = False
                if new_step:
                    self.per_step.append(0)
                    self.host_copies.clear()

        return wrapped


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("sync_teachers")
    torch.manual_seed(1)
    return (save_checkpoint(root / "pose.pt", create_model("pose_h-4")),
            save_checkpoint(root / "seg.pt", create_model("seg_h-4")))


def _data(synth: SyntheticLayout) -> Dict[str, torch.utils.data.Dataset]:
    transform = TrainTransform(64)
    pose = CocoKeypoints(synth.coco_images("train"), synth.coco_annotations("train"), transform, skip_empty=True)
    return {"pose": pose, "seg": Cityscapes(synth.cityscapes_root, "train", transform)}


def _config(**changes) -> RunConfig:
    # No logging step inside the epoch: log_every is beyond it, and the epoch's end comes after the last batch.
    base = dict(epochs=1, batch_size=2, workers=0, steps_per_epoch=STEPS, log_every=100, val_every=0, device="cpu",
                task_ratios=(1, 1), channels_last=True)
    base.update(changes)
    return RunConfig(**base)


def _steady_steps(counter: SyncCounter) -> List[int]:
    """Read-backs of steps 2 .. STEPS-1: the first builds the optimizer's state, the last bucket holds the
    epoch's end (its summary, the checkpoint)."""
    assert len(counter.per_step) == STEPS + 2  # before the first batch, one per batch, the loader's last call
    return counter.per_step[2:STEPS]


@pytest.mark.parametrize("tag_kd, budget", [("relational", 0), ("none", 0), ("pseudo", 1)])
def test_online_teacher_steps_read_back_once(synth: SyntheticLayout, teacher_files, tmp_path: Path,  # noqa: ANN001
                                             monkeypatch: pytest.MonkeyPatch, tag_kd: str, budget: int) -> None:
    """The engine drops a non-finite step on the device (its fused optimizer), so it reads nothing; the pseudo
    tag targets make the batch's one copy of the teacher maps to the host, where they are grouped."""
    data = _data(synth)
    student = create_model("mtl_h-4", input_size=64)
    pose_teacher, seg_teacher = load_teacher(teacher_files[0]), load_teacher(teacher_files[1])
    settings = KDSettings(tag_kd=tag_kd, balancing="dwa")
    objective = DistillationObjective(student.body.out_channels, pose_teacher, seg_teacher, settings)
    counter = SyncCounter(monkeypatch)
    fit(student, objective, MixedTaskDataset([data["pose"], data["seg"]]), _config(), tmp_path)
    monkeypatch.undo()
    assert max(_steady_steps(counter)) == budget, counter.per_step
    # The online teachers read the student's NHWC images in NHWC themselves.
    conv = next(m for m in pose_teacher.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("tag_kd", ["relational", "pseudo"])
def test_cached_teacher_steps_read_back_once(synth: SyntheticLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             pooled_image, tag_kd: str) -> None:  # noqa: ANN001
    """The replay of cached maps (mirrored samples included) makes its constants on the device; the pseudo tag
    targets come from people grouped when the cache was built, so no step groups on the host."""
    data = _data(synth)
    teacher = FrozenTeacher(pooled_image)
    cache = TeacherCache(tmp_path / "cache", {"both": teacher}, 96, {"teacher": "pooled"}, tag_kd=tag_kd)
    for tag, dataset in data.items():
        cache.build(dataset, tag, progress=False)
    cached = [CachedTeacherDataset(data[tag], cache, tag) for tag in ("pose", "seg")]
    student = create_model("mtl_h-4", input_size=64)
    objective = DistillationObjective(student.body.out_channels, None, None, KDSettings(tag_kd=tag_kd),
                                      source=CachedTeachers(("pose", "seg")))
    counter = SyncCounter(monkeypatch)
    fit(student, objective, MixedTaskDataset(cached), _config(), tmp_path / "run")
    monkeypatch.undo()
    assert max(_steady_steps(counter)) == 0, counter.per_step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("tag_kd, budget", [("relational", 0), ("pseudo", 1)])
def test_cuda_steps_wait_once(synth: SyntheticLayout, teacher_files, tmp_path: Path, tag_kd: str,  # noqa: ANN001
                              budget: int) -> None:
    """PyTorch's own report of what waits for the GPU (every read-back, boolean selection, pageable copy)."""
    import warnings

    data = _data(synth)
    student = create_model("mtl_h-4", input_size=64)
    teachers = load_teacher(teacher_files[0]), load_teacher(teacher_files[1])
    objective = DistillationObjective(student.body.out_channels, *teachers, KDSettings(tag_kd=tag_kd))
    base = torch.utils.data.dataloader._BaseDataLoaderIter
    next_batch = base.__next__
    with warnings.catch_warnings(record=True) as caught, pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("always")
        starts: List[int] = []

        def reporting_between_batches(iterator):  # noqa: ANN001, ANN202
            torch.cuda.set_sync_debug_mode(0)
            try:
                return next_batch(iterator)
            finally:
                starts.append(len(caught))
                torch.cuda.set_sync_debug_mode(1)

        patch.setattr(base, "__next__", reporting_between_batches)
        try:
            mixed = MixedTaskDataset([data["pose"], data["seg"]])
            fit(student, objective, mixed, _config(device="cuda", workers=2), tmp_path)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert len(starts) == STEPS + 1, starts
    per_step = [[str(w.message).splitlines()[0] for w in caught[a:b] if "synchroniz" in str(w.message)]
                for a, b in zip(starts[1:STEPS - 1], starts[2:STEPS])]
    assert max(len(waits) for waits in per_step) <= budget, per_step
