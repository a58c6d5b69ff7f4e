"""KD losses by name: a loss registered from outside the library trains a student, online and from the cache."""
from pathlib import Path
from typing import Dict, List

import pytest
import torch

import distill
from distill import kd_losses
from distill.objective import KDSettings
from distill.student import train_student
from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import read_checkpoint, save_checkpoint
from mtl_ehrnet.data import SyntheticLayout
from mtl_ehrnet.training.metric_log import read_log


@pytest.fixture(scope="module")
def teacher_paths(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("registry_teachers")
    torch.manual_seed(2)
    return (save_checkpoint(root / "pose.pt", create_model("pose_h-4")),
            save_checkpoint(root / "seg.pt", create_model("seg_h-4")))


@pytest.fixture()
def registered():  # noqa: ANN201
    """Registers an L1 between class probabilities (seg) and a tag loss that reads the raw teacher tags; both are
    removed afterwards. Each records the shapes it was called with."""
    calls: Dict[str, List] = {"seg": [], "pose_tags": []}

    def probability_l1(student, teacher, context):  # noqa: ANN001, ANN202
        calls["seg"].append((tuple(student["seg"].shape), tuple(teacher["seg"].shape), context.temperature))
        teacher_seg = torch.nn.functional.interpolate(teacher["seg"].float(), size=student["seg"].shape[-2:],
                                                      mode="bilinear", align_corners=False)
        difference = student["seg"].float().softmax(1) - teacher_seg.softmax(1)
        return difference.abs().mean(dim=(1, 2, 3))

    def tag_l2(student, teacher, context):  # noqa: ANN001, ANN202
        calls["pose_tags"].append(tuple(teacher["tags"].shape))
        return (student["tags"].float() - teacher["tags"].float()).square().mean(dim=(1, 2, 3))

    assert distill.register_kd_loss("seg", "probability_l1", probability_l1) is probability_l1
    distill.register_kd_loss("pose_tags", "tag_l2", tag_l2)
    yield calls
    kd_losses._REGISTRY["seg"].pop("probability_l1")
    kd_losses._REGISTRY["pose_tags"].pop("tag_l2")


@pytest.mark.parametrize("cached", [False, True])
def test_a_registered_kd_loss_trains_a_student(synth: SyntheticLayout, teacher_paths, tmp_path: Path, registered,
                                               cached: bool) -> None:  # noqa: ANN001
    assert "probability_l1" in distill.kd_loss_names("seg")
    settings = KDSettings(seg_kd="probability_l1", tag_kd="tag_l2", temperature=2.0)
    torch.manual_seed(0)
    before = create_model("mtl_h-4", input_size=64).state_dict()
    result = train_student(
        "mtl_h-4", tmp_path / "run", coco=(synth.coco_annotations("train"), synth.coco_images("train")),
        cityscapes=synth.cityscapes_root, pose_teacher=teacher_paths[0], seg_teacher=teacher_paths[1],
        cache=tmp_path / "cache" if cached else None, input_size=64, epochs=1, batch_size=4, workers=0,
        steps_per_epoch=2, task_ratios=(1, 1), settings=settings, seed=0,
    )
    assert len(registered["seg"]) == 2 and len(registered["pose_tags"]) == 2
    student_shape, teacher_shape, temperature = registered["seg"][0]
    assert student_shape[0] == 4 and teacher_shape[0] == 4 and temperature == 2.0
    train = read_log(result.out_dir / "log.jsonl", "train")
    assert all(r["seg/kd"] > 0 and r["pose/kd_tags"] > 0 for r in train)
    trained = read_checkpoint(result.out_dir / "student.pt")["model"]
    assert any(not torch.equal(trained[k], v) for k, v in before.items() if v.is_floating_point())


def test_registry_refusals(registered) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="already"):
        distill.register_kd_loss("seg", "probability_l1", lambda s, t, c: s["seg"].sum())
    with pytest.raises(ValueError, match="reserved"):
        distill.register_kd_loss("seg", "none", lambda s, t, c: s["seg"].sum())
    with pytest.raises(ValueError, match="no KD task 'depth'; tasks: pose_heatmaps, pose_tags, seg"):
        distill.register_kd_loss("depth", "l1", lambda s, t, c: s["seg"].sum())
    with pytest.raises(ValueError, match=r"no seg KD loss 'l2'; registered: none, cwd, kl, probability_l1"):
        KDSettings(seg_kd="l2")


def test_none_leaves_the_term_out() -> None:
    from distill.objective import DistillationObjective

    student = create_model("mtl_h-4", input_size=64)
    teacher = create_model("pose_h-4", input_size=64)
    objective = DistillationObjective(student.body.out_channels, teacher, None,
                                      KDSettings(heatmap_kd="none", tag_kd="relational"))
    assert "pose/kd_heatmaps" not in objective.term_names() and "pose/kd_tags" in objective.term_names()
