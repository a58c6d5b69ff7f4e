"""Teacher sources: the objective compares with whatever source it is given, in the batch's frame."""
from typing import Dict

import pytest
import torch

from distill.objective import DistillationObjective, KDSettings
from distill.quickstart_runs import torch_threads
from distill.seg_kd import pixel_kl
from distill.teacher_sources import CachedTeachers, OnlineTeachers, TeacherSource
from mtl_ehrnet.data import Cityscapes, SyntheticLayout, TrainTransform
from mtl_ehrnet.data.mixed import collate_samples

CHANNELS = (14, 27, 54, 107)


class ConstantSeg(TeacherSource):
    """A source of one's own: the same class map for every sample."""

    tasks = ("seg",)

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.calls = 0

    def forward(self, batch: Dict[str, torch.Tensor], features: bool = False) -> Dict[str, torch.Tensor]:
        self.calls += 1
        return {"seg": self.logits.expand(batch["image"].shape[0], -1, -1, -1)}


def _batch_and_outputs(synth: SyntheticLayout):
    seg = Cityscapes(synth.cityscapes_root, "train", TrainTransform(64))
    batch = collate_samples([seg[0], seg[1]])
    generator = torch.Generator().manual_seed(0)
    outputs = {"seg": torch.randn(2, 19, 16, 16, generator=generator),
               **{k: torch.zeros(2, 17, n, n) for k, n in (("heatmaps", 32), ("heatmaps_lr", 16), ("tags", 16))}}
    return batch, outputs


def test_a_source_of_ones_own_is_what_the_seg_kd_term_compares_with(synth: SyntheticLayout) -> None:
    batch, outputs = _batch_and_outputs(synth)
    teacher = torch.randn(1, 19, 16, 16, generator=torch.Generator().manual_seed(1))
    source = ConstantSeg(teacher)
    objective = DistillationObjective(CHANNELS, None, None, KDSettings(labelled_kd_weight=1.0), source=source)
    assert "seg/kd" in objective.term_names() and "pose/kd_heatmaps" not in objective.term_names()
    term = objective(outputs, batch)["seg/kd"]
    assert source.calls == 1
    torch.testing.assert_close(term, pixel_kl(outputs["seg"], teacher.expand(2, -1, -1, -1), 1.0).mean())
    itself = ConstantSeg(outputs["seg"][:1])
    objective = DistillationObjective(CHANNELS, None, None, KDSettings(), source=itself)
    one = {k: v[:1] for k, v in batch.items()}
    assert objective({k: v[:1] for k, v in outputs.items()}, one)["seg/kd"].abs() < 1e-6


def test_online_teachers_answer_for_their_tasks_only(synth: SyntheticLayout) -> None:
    seg_teacher = torch.nn.Conv2d(3, 19, 4, stride=4)
    source = OnlineTeachers({"pose": None, "seg": _SegModel(seg_teacher)})
    batch, _ = _batch_and_outputs(synth)
    assert source.tasks == ("seg",)
    torch.testing.assert_close(source(batch)["seg"], seg_teacher(batch["image"]))


def test_concurrent_teachers_answer_in_a_worker_thread_with_the_same_maps(synth: SyntheticLayout) -> None:
    import threading

    seg_teacher = _SegModel(torch.nn.Conv2d(3, 19, 4, stride=4))
    threads = []
    seg_teacher.register_forward_hook(lambda *_: threads.append(threading.current_thread().name))
    batch, _ = _batch_and_outputs(synth)
    inline = OnlineTeachers({"seg": seg_teacher})(batch)["seg"]
    source = OnlineTeachers({"seg": seg_teacher}, concurrent=True)
    source.prepare(batch)  # started here, before the student's forward pass
    assert torch.equal(source(batch)["seg"], inline) and threads[-1].startswith("teachers")
    other = {**batch, "image": batch["image"].flip(-1)}
    source.prepare(batch)
    # A batch it was not prepared for is answered in this thread, after the stale answer is done.
    answer = source(other)["seg"]
    assert threads[-2].startswith("teachers") and threads[-1] == threading.current_thread().name
    assert torch.equal(answer, OnlineTeachers({"seg": seg_teacher})(other)["seg"])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the worker runs under the caller's autocast
        source.prepare(batch)
        assert source(batch)["seg"].dtype == torch.bfloat16
    assert OnlineTeachers({"seg": seg_teacher}).prepare(batch) is None  # not concurrent: nothing starts
    # The worker runs with the caller's torch threads, whatever it had when it first ran a kernel: a run's
    # numbers depend on its thread count.
    counts = []
    seg_teacher.register_forward_hook(lambda *_: counts.append(torch.get_num_threads()))
    for wanted in (2, 1):
        with torch_threads(wanted):
            source.prepare(batch)
            source(batch)
        assert threads[-1].startswith("teachers") and counts[-1] == wanted


class _SegModel(torch.nn.Module):
    def __init__(self, conv: torch.nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"seg": self.conv(images)}


def test_misuse_is_refused_with_what_to_do(synth: SyntheticLayout) -> None:
    batch, _ = _batch_and_outputs(synth)
    with pytest.raises(ValueError, match="the batch carries no cached teacher maps: wrap the dataset in "
                                         "CachedTeacherDataset"):
        CachedTeachers(("pose", "seg"))(batch)
    with pytest.raises(ValueError, match="give the teachers or a teacher source, not both"):
        DistillationObjective(CHANNELS, None, torch.nn.Identity(), source=CachedTeachers(("seg",)))
    with pytest.raises(ValueError, match="feature hints need the teachers online"):
        DistillationObjective(CHANNELS, None, None, KDSettings(hints=True), source=CachedTeachers(("seg",)))
