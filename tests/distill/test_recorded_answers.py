"""Teacher answers recorded ahead of a distillation run: keyed by the batch's images, refused for another run's
settings, read in place of that teacher's pass and answered online where missing. (That a distilled student trained
on recorded answers equals one trained with its teachers online, to the bit, is asserted by the quick start's
side-by-side test.)"""
from pathlib import Path

import pytest
import torch

from distill.answer_store import MANIFEST, TeacherAnswers, answer_identity, batch_key
from distill.quickstart import QuickstartPlan
from distill.quickstart_runs import ANSWERS_RUN, records_answers, run_needs
from distill.student import train_student
from distill.teacher_sources import RecordedTeachers
from mtl_ehrnet.training import RunConfig


def _identity(tmp_path: Path, **changes) -> dict:
    teacher = tmp_path / "seg.pt"
    teacher.write_bytes(b"weights")
    identity = answer_identity({"seg": teacher}, RunConfig(), torch.device("cpu"), flip=False, concurrent=True)
    return {**identity, **changes}


def test_a_batch_is_keyed_by_its_values_in_any_memory_format() -> None:
    images = torch.rand(2, 3, 8, 8)
    key = batch_key(images)
    assert batch_key(images.contiguous(memory_format=torch.channels_last)) == key
    changed = images.clone()
    changed[1, 2, 7, 7] += 1e-6
    assert batch_key(changed) != key
    assert batch_key(images[:1]) != key


def test_answers_come_back_as_recorded_and_only_to_their_own_run(tmp_path: Path) -> None:
    identity = _identity(tmp_path)
    store = TeacherAnswers(tmp_path / "answers", identity)
    store.start()
    images = torch.rand(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    seg = torch.rand(2, 19, 2, 2).contiguous(memory_format=torch.channels_last)
    store.write(batch_key(images), {"seg": seg})
    with pytest.raises(FileNotFoundError, match="no complete recording"):
        TeacherAnswers.open(tmp_path / "answers")
    store.finish(batches=1)
    opened = TeacherAnswers.open(tmp_path / "answers")
    assert opened.tasks == ("seg",)
    found = opened.find(images)
    assert torch.equal(found["seg"], seg) and found["seg"].stride() == seg.stride()
    assert opened.find(torch.rand(2, 3, 8, 8)) is None
    opened.check(identity)
    with pytest.raises(ValueError, match=r"threads: recorded \d+, this run 99.*"
                                         r"memory_format: recorded 'channels_last', this run 'contiguous'"):
        opened.check({**identity, "threads": 99, "memory_format": "contiguous"})


def test_a_resumed_recording_keeps_only_its_own_batches(tmp_path: Path) -> None:
    identity = _identity(tmp_path)
    images = torch.rand(2, 3, 8, 8)
    first = TeacherAnswers(tmp_path / "answers", identity)
    first.start()
    first.write(batch_key(images), {"seg": torch.rand(2, 19, 2, 2)})
    TeacherAnswers(tmp_path / "answers", identity).start(resume=True)
    assert first.stored(batch_key(images))
    TeacherAnswers(tmp_path / "answers", {**identity, "teacher_flip": True}).start(resume=True)
    assert not first.stored(batch_key(images))
    first.start()
    first.write(batch_key(images), {"seg": torch.rand(2, 19, 2, 2)})
    first.finish(batches=1)
    first.start(resume=False)
    assert not first.stored(batch_key(images)) and not (tmp_path / "answers" / MANIFEST).exists()


def test_recorded_teachers_read_what_was_recorded_and_run_the_rest(tmp_path: Path, pooled_image) -> None:
    store = TeacherAnswers(tmp_path / "answers", _identity(tmp_path))
    store.start()
    recorded_images, other_images = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    sentinel = torch.full((2, 19, 4, 4), 7.0)
    store.write(batch_key(recorded_images), {"seg": sentinel})
    store.finish(batches=1)
    online = pooled_image(recorded_images)
    source = RecordedTeachers({"pose": pooled_image, "seg": pooled_image}, TeacherAnswers.open(store.root),
                              concurrent=True)
    batch = {"image": recorded_images}
    source.prepare(batch)
    answer = source(batch)
    assert torch.equal(answer["seg"], sentinel)  # read, not computed
    assert torch.equal(answer["heatmaps"], online["heatmaps"])  # the pose teacher ran
    assert torch.equal(source({"image": other_images})["seg"], pooled_image(other_images)["seg"])  # not recorded
    assert torch.equal(source(batch, features=True)["seg"], online["seg"])  # features need the pass
    assert (source.read, source.asked) == (1, 3)
    with pytest.raises(ValueError, match=r"are for \['seg'\], which has no teacher here"):
        RecordedTeachers({"pose": pooled_image}, TeacherAnswers.open(store.root))


def test_recorded_answers_and_a_cache_are_refused_together(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="recorded teacher answers .* and a teacher cache"):
        train_student("mtl_h-4", tmp_path, coco=(tmp_path / "a.json", tmp_path), cityscapes=tmp_path,
                      cache=tmp_path / "cache", recorded_answers=tmp_path / "answers")


def test_the_quick_start_records_where_runs_train_side_by_side() -> None:
    plan = QuickstartPlan.from_recipe()
    assert records_answers(plan, jobs=2) and not records_answers(plan, jobs=1)
    assert not records_answers(QuickstartPlan.from_recipe(teacher_cache=True), jobs=2)
    needs = run_needs(plan, record=True)
    assert needs[ANSWERS_RUN] == ("seg_teacher",)
    assert ANSWERS_RUN in needs["joint_student_kd"]
    assert ANSWERS_RUN not in run_needs(plan)


def test_starting_a_recording_removes_stale_answers_only(tmp_path: Path) -> None:
    """A recording directory that is also a run's leaves the run's checkpoints alone."""
    root = tmp_path / "shared"
    store = TeacherAnswers(root, _identity(tmp_path))
    store.start()
    store.write(batch_key(torch.zeros(1, 3, 8, 8)), {"seg": torch.zeros(1, 19, 2, 2)})
    (root / "last.pt").write_bytes(b"a run's checkpoint")
    TeacherAnswers(root, _identity(tmp_path, threads=99)).start()  # another run's recording: starts afresh
    assert sorted(p.name for p in root.glob("*.pt")) == ["last.pt"]


def test_record_answers_then_distill_reads_every_batch(synth, tmp_path: Path, capsys) -> None:
    """``record-answers`` walks a distill run's batches without training, recording the teachers ``--tasks`` names;
    ``distill`` with the same flags and ``teachers.recorded_answers`` reads every batch's segmentation maps; misuses
    are refused with what to give instead."""
    from mtl_ehrnet import create_model
    from mtl_ehrnet.checkpoint import save_checkpoint
    from mtl_ehrnet.cli import main

    torch.manual_seed(1)
    seg = save_checkpoint(tmp_path / "seg.pt", create_model("seg_h-4"))
    pose = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4"))
    flags = ["--student", "mtl_h-4", "--coco", str(synth.coco_annotations("train")), str(synth.coco_images("train")),
             "--cityscapes", str(synth.cityscapes_root), "--pose-teacher", str(pose), "--seg-teacher", str(seg),
             "--epochs", "1", "--batch-size", "4", "--set", "data.input_size=64", "--set", "run.workers=0"]
    answers = tmp_path / "answers"
    assert main(["record-answers", *flags, "--tasks", "seg", "--out", str(answers)]) == 0
    recorded = len(list(answers.glob("*.pt")))
    assert recorded >= 2 and (answers / MANIFEST).is_file()
    assert main(["distill", *flags, "--set", f"teachers.recorded_answers={answers}", "--out", str(tmp_path / "o")]) == 0
    assert f"teacher answers: {recorded} of {recorded} batches' seg maps read" in capsys.readouterr().out
    assert (tmp_path / "o" / "student.pt").is_file()
    no_seg = flags[: flags.index("--seg-teacher")] + flags[flags.index("--seg-teacher") + 2 :]
    assert main(["record-answers", *no_seg, "--tasks", "seg", "--out", str(answers)]) == 1
    assert main(["record-answers", *flags, "--tasks", "depth", "--out", str(answers)]) == 1
    assert main(["record-answers", *flags, "--cache", "c", "--out", str(answers)]) == 1
    assert main(["distill", *flags, "--set", f"teachers.recorded_answers={answers}", "--cache", "c", "--out", "o"]) == 1
    err = capsys.readouterr().err
    assert "no seg teacher to record: give --seg-teacher CKPT" in err and "--tasks takes pose and/or seg" in err
    assert "nothing to record" in err and "two sources of the teachers' maps" in err
