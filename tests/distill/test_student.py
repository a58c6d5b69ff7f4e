"""Student training: teachers never learn, every batch mix trains, the cache replays augmentation,
the result holds no teacher weights."""
import math
from pathlib import Path
from typing import Dict

import pytest
import torch

from distill.cache_codec import quantise
from distill.objective import DistillationObjective, KDSettings
from distill.replay import replay_affine, replay_cached
from distill.student import train_student
from distill.teacher_cache import (
    CachedTeacherDataset,
    TeacherCache,
    _pad_people,
    bracketing_cache_sizes,
    cache_sizes,
    nearest_cache_size,
)
from distill.teacher_sources import CachedTeachers, OnlineTeachers
from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import read_checkpoint, save_checkpoint
from mtl_ehrnet.data import Cityscapes, CocoKeypoints, SyntheticLayout, TrainTransform
from mtl_ehrnet.data.mixed import collate_samples
from teachers import FlipAveragedTeacher, FrozenTeacher, load_teacher


@pytest.fixture(scope="module")
def teacher_paths(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(1)
    return (save_checkpoint(root / "pose.pt", create_model("pose_h-4")),
            save_checkpoint(root / "seg.pt", create_model("seg_h-4")))


def _datasets(synth: SyntheticLayout):
    transform = TrainTransform(64)
    pose = CocoKeypoints(synth.coco_images("train"), synth.coco_annotations("train"), transform, skip_empty=True)
    seg = Cityscapes(synth.cityscapes_root, "train", transform)
    return pose, seg


def _objective(teacher_paths, **settings):
    student = create_model("mtl_h-4", input_size=64)
    objective = DistillationObjective(student.body.out_channels, load_teacher(teacher_paths[0]),
                                      load_teacher(teacher_paths[1]), KDSettings(**settings))
    return student, objective


@pytest.mark.parametrize("which", ["pose", "seg", "mixed"])
def test_gradients_reach_student_never_teachers(synth: SyntheticLayout, teacher_paths, which: str) -> None:
    pose, seg = _datasets(synth)
    samples = {"pose": [pose[0], pose[1]], "seg": [seg[0], seg[1]], "mixed": [pose[0], seg[0]]}[which]
    batch = collate_samples(samples)
    student, objective = _objective(teacher_paths, hints=True, balancing="uncertainty")
    student.train()
    objective.train()
    terms = objective(student(batch["image"], return_features=True), batch)
    assert {"pose/kd_heatmaps", "pose/kd_tags", "seg/kd", "trunk/hints", "seg/ce"} <= set(terms)
    assert all(torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in student.parameters())
    teachers = list(objective.source.teachers.parameters())
    assert teachers and all(p.grad is None and not p.requires_grad for p in teachers)
    assert all(not m.training for t in objective.source.teachers.values() for m in t.modules())
    assert objective.hints is not None and all(p.grad is not None for p in objective.hints.parameters())


def test_task_weights_scale_every_term_of_their_task(synth: SyntheticLayout, teacher_paths) -> None:
    pose, seg = _datasets(synth)
    batch = collate_samples([pose[0], seg[0]])
    student = create_model("mtl_h-4", input_size=64).eval()
    teachers = load_teacher(teacher_paths[0]), load_teacher(teacher_paths[1])
    plain = DistillationObjective(student.body.out_channels, *teachers)
    weighted = DistillationObjective(student.body.out_channels, *teachers, task_weights={"pose": 3.0, "seg": 0.01})
    with torch.no_grad():
        outputs = student(batch["image"])
        a, b = plain(outputs, batch), weighted(outputs, batch)
    assert set(a) == set(b) and {"pose/kd_heatmaps", "pose/kd_tags", "seg/kd", "seg/ce", "pose/heatmaps"} <= set(a)
    for name in a:
        factor = 3.0 if name.startswith("pose/") else 0.01
        assert torch.allclose(b[name], factor * a[name]), name
    with pytest.raises(ValueError, match="seg task weight .* finite and >= 0"):
        DistillationObjective(student.body.out_channels, *teachers, task_weights={"seg": -1.0})
    with pytest.raises(ValueError, match="for 'pose' and 'seg'"):
        DistillationObjective(student.body.out_channels, *teachers, task_weights={"depth": 1.0})


def test_kd_terms_vanish_when_student_equals_teacher(synth: SyntheticLayout, teacher_paths, tmp_path: Path) -> None:
    pose, seg = _datasets(synth)
    batch = collate_samples([seg[0], seg[1]])
    # A student that is the seg teacher itself: the seg KD term is 0.
    seg_teacher = load_teacher(teacher_paths[1])
    objective = DistillationObjective((14, 27, 54, 107), None, seg_teacher, KDSettings())
    outputs = seg_teacher(batch["image"])
    outputs.update({k: torch.zeros(2, 17, *s)
                    for k, s in (("heatmaps", (32, 32)), ("heatmaps_lr", (16, 16)), ("tags", (16, 16)))})
    assert objective(outputs, batch)["seg/kd"].abs().item() < 1e-6


class _TwoPeopleTeacher(torch.nn.Module):
    """A stand-in pose teacher that sees the same two confident people, tags 0 and 3, in every image."""

    tasks = ("pose",)

    def forward(self, images: torch.Tensor, **_: bool) -> dict:
        heat = torch.zeros(images.shape[0], 17, 16, 16)
        tags = torch.zeros_like(heat)
        for y, tag in ((3, 0.0), (11, 3.0)):
            for joint in range(17):
                heat[:, joint, y, joint % 16] = 0.9
                tags[:, joint, y, joint % 16] = tag
        return {"heatmaps_lr": heat, "tags": tags, "heatmaps": torch.nn.functional.interpolate(heat, scale_factor=2.0)}


def test_tag_kd_is_weighted_and_pushed_as_the_ground_truth_terms(synth: SyntheticLayout) -> None:
    from distill.pose_kd import tag_kd_pseudo
    from mtl_ehrnet.training.task_loss import ground_truth_loss

    pose, _ = _datasets(synth)
    batch = collate_samples([pose[0], pose[1]])
    teacher = _TwoPeopleTeacher()
    gt = ground_truth_loss(("pose", "seg"), ae_weight=0.01, ae_push="max")
    objective = DistillationObjective((14, 27, 54, 107), teacher, None, KDSettings(labelled_kd_weight=1.0), gt=gt)
    torch.manual_seed(0)
    # near-equal tags: max pushes 1 - |d| ~ 1, exp ~ 1 too
    outputs = {"heatmaps": torch.zeros(2, 17, 32, 32), "heatmaps_lr": torch.zeros(2, 17, 16, 16),
               "seg": torch.zeros(2, 19, 16, 16), "tags": 1e-3 * torch.randn(2, 17, 16, 16)}
    expected = 0.01 * tag_kd_pseudo(outputs["tags"], teacher(batch["image"]), push_kind="max").mean()
    assert expected.item() > 0.004  # two people found, pushed
    assert objective(outputs, batch)["pose/kd_tags"].item() == pytest.approx(expected.item(), rel=1e-6)
    exp_objective = DistillationObjective((14, 27, 54, 107), teacher, None, KDSettings(labelled_kd_weight=1.0),
                                          gt=ground_truth_loss(("pose", "seg"), ae_weight=0.01))
    exp_value = 0.01 * tag_kd_pseudo(outputs["tags"], teacher(batch["image"]), push_kind="exp").mean()
    assert exp_objective(outputs, batch)["pose/kd_tags"].item() == pytest.approx(exp_value.item(), rel=1e-6)
    assert exp_value.item() != pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("flip,sizes", [(False, [64]), (True, [64]), (False, [64, 96])])
def test_cached_targets_match_online_teachers_on_an_augmented_sample(
    synth: SyntheticLayout, tmp_path: Path, flip: bool, sizes, pooled_image
) -> None:
    pose, _ = _datasets(synth)
    teacher = FrozenTeacher(pooled_image)
    if flip:  # the flip-averaged teacher goes through the cache and the online path alike
        teacher = FlipAveragedTeacher(teacher)
    # With several sizes a batch mixes letterboxes: their maps are padded to one shape and replayed by their own size.
    cache = TeacherCache(tmp_path / "cache", {"both": teacher}, sizes, {"teacher": "pooled"})
    assert cache.build(pose, "pose", progress=False) == len(pose) * len(sizes)
    assert cache.build(pose, "pose", progress=False) == 0  # nothing left to do: resumable
    torch.manual_seed(5)
    batch = collate_samples([CachedTeacherDataset(pose, cache, "pose")[i] for i in range(4)])
    # both strides, one byte a value
    assert batch["teacher_heatmaps_lr"].dtype == batch["teacher_heatmaps"].dtype == torch.uint8
    assert batch["teacher_heatmaps"].shape[-2:] == tuple(2 * n for n in batch["teacher_heatmaps_lr"].shape[-2:])
    assert batch["teacher_people"].shape == (4, 30, 17, 3) and "teacher_tags" not in batch  # people instead of tags
    if len(sizes) > 1:
        assert sorted(set(batch["teacher_letterbox"].tolist())) == sizes  # this batch mixes both
    objective = DistillationObjective((14, 27, 54, 107), teacher, None, KDSettings())
    cached = CachedTeachers(objective.source.tasks)(batch)
    online = objective.source({k: v for k, v in batch.items() if not k.startswith("teacher_")})
    inside = cached["valid_lr"][:, None] * (online["heatmaps_lr"] != 0)  # away from borders and padding
    error = ((cached["heatmaps_lr"] - online["heatmaps_lr"]).abs() * inside).sum() / inside.sum()
    spread = ((online["heatmaps_lr"] - online["heatmaps_lr"].mean()).abs() * inside).sum() / inside.sum()
    assert error < 0.25 * spread, (error, spread)  # interpolation noise only
    shuffled = torch.roll(online["heatmaps_lr"], 3, dims=-1)  # a wrong geometry is far off
    assert ((cached["heatmaps_lr"] - shuffled).abs() * inside).sum() / inside.sum() > 2 * error
    fine = ((cached["heatmaps"] - online["heatmaps"])[..., ::2, ::2].abs() * inside).sum() / inside.sum()
    assert fine < 0.25 * spread, (fine, spread)  # the stride-2 maps from their own cached stride
    with pytest.raises(ValueError, match="was built for"):
        TeacherCache(tmp_path / "cache", {"both": teacher}, sizes, {"teacher": "other"})


def test_a_cache_refuses_another_image_set_naming_what_changed(synth: SyntheticLayout, tmp_path: Path,
                                                               pooled_image) -> None:
    """Entries are keyed by sample index: a cache reused with another set would serve other images' maps."""
    pose, seg = _datasets(synth)
    cache = TeacherCache(tmp_path / "cache", {"both": FrozenTeacher(pooled_image)}, 64, {"teacher": "pooled"})
    cache.build(pose, "pose", progress=False)
    cache.build(seg, "seg", progress=False)
    assert CachedTeacherDataset(pose, cache, "pose")[0]["teacher_heatmaps"].dtype == torch.uint8  # the same set
    other = CocoKeypoints(synth.coco_images("val"), synth.coco_annotations("val"), TrainTransform(64))
    again = TeacherCache(tmp_path / "cache", {"both": FrozenTeacher(pooled_image)}, 64, {"teacher": "pooled"})
    with pytest.raises(ValueError, match=r"holds 'pose' entries of another image set \(annotations '[0-9a-f]+' -> "):
        again.build(other, "pose", progress=False)
    with pytest.raises(ValueError, match=r"another image set \(.*images"):
        CachedTeacherDataset(other, again, "pose")
    with pytest.raises(ValueError, match=r"holds 'seg' entries of another image set \(images .*labels .*samples"):
        again.build(Cityscapes(synth.cityscapes_root, "val", TrainTransform(64)), "seg", progress=False)
    assert len(list((tmp_path / "cache" / "pose").glob("*.pt"))) == len(pose)  # nothing overwritten


def test_a_larger_cache_letterbox_replays_sharper_maps(synth: SyntheticLayout, tmp_path: Path, pooled_image) -> None:
    """Letterboxed at the student's size, a cache holds the image at a lower scale than a training crop
    shows it; at 1.5x (the default) the replayed maps are closer to the online teacher's."""
    from distill.student import default_cache_size

    pose, _ = _datasets(synth)
    teacher = FrozenTeacher(pooled_image)
    torch.manual_seed(5)
    samples = [pose[i] for i in range(6)]
    online = OnlineTeachers({"pose": teacher})(collate_samples(samples))
    errors = {}
    for size in (64, default_cache_size((64, 64))):
        cache = TeacherCache(tmp_path / str(size), {"both": teacher}, size, {"teacher": "pooled"})
        cache.build(pose, "pose", progress=False)
        entries = [_pad_people(cache.load("pose", i)) for i in range(len(samples))]
        batch = collate_samples([{**s, **{f"teacher_{k}": v for k, v in e.items()}} for s, e in zip(samples, entries)])
        cached = CachedTeachers(("pose",))(batch)
        inside = cached["valid_lr"][:, None] * (online["heatmaps"][:, :, ::2, ::2] != 0)
        errors[size] = float(((cached["heatmaps"] - online["heatmaps"])[:, :, ::2, ::2].abs() * inside).sum()
                             / inside.sum())
    assert default_cache_size((64, 64)) == 96 and default_cache_size((128, 128)) == 192
    assert errors[96] < 0.8 * errors[64], errors


def test_nearest_cache_size_matches_the_sample_scale() -> None:
    identity = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    assert nearest_cache_size([128, 160, 192], identity, (120, 160)) == 160  # letterboxes show it at 0.8 / 1.0 / 1.2
    assert nearest_cache_size([128, 160, 192], identity * 1.15, (120, 160)) == 192
    mirrored = torch.tensor([[-0.8, 0, 127], [0, 0.8, 0]])
    assert nearest_cache_size([128, 160, 192], mirrored, (120, 160)) == 128


def test_a_cache_of_several_sizes_serves_each_sample_its_nearest_scale(
    synth: SyntheticLayout, tmp_path: Path, pooled_image
) -> None:
    pose, _ = _datasets(synth)
    cache = TeacherCache(tmp_path / "multi", {"both": FrozenTeacher(pooled_image)}, [128, 64], {"teacher": "pooled"})
    assert cache.input_sizes == (64, 128) and cache.identity["input_size"] == "64,128"
    assert cache.build(pose, "pose", progress=False) == 2 * len(pose)
    assert cache.path("pose", 0, 64).is_file() and cache.path("pose", 0, 128).is_file()
    torch.manual_seed(5)
    data = CachedTeacherDataset(pose, cache, "pose")
    served = set()
    for i in range(len(pose)):
        sample = data[i]
        scale = float(torch.linalg.det(sample["affine"][:, :2]).abs().sqrt())
        cached_scale = float(torch.linalg.det(sample["teacher_affine"][:, :2]).abs().sqrt())
        long_side = int(sample["orig_size"].max())
        best = min((64, 128), key=lambda size: abs(math.log(size / long_side / scale)))
        assert cached_scale == pytest.approx(best / long_side, rel=1e-4)
        served.add(best)
    assert served == {64, 128}  # the augmentation's scales straddle the two
    with pytest.raises(ValueError, match="multiples of 32"):
        TeacherCache(tmp_path / "bad", {"both": FrozenTeacher(pooled_image)}, [64, 100], {"teacher": "pooled"})
    with pytest.raises(ValueError, match="holds sizes"):
        cache.path("pose", 0, 96)


def test_replay_mirrors_and_swaps_joint_channels() -> None:
    maps = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    identity = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    mirror = torch.tensor([[[-1.0, 0, 3], [0, 1, 0]]])  # x -> 3 - x on a 4-pixel-wide input
    warped, valid = replay_affine(maps, identity, mirror, (4, 4), 1, 1, flip_index=[1, 0])
    assert valid.all()
    torch.testing.assert_close(warped, maps.flip(-1)[:, [1, 0]])


def test_train_student_writes_student_only_checkpoint(synth: SyntheticLayout, teacher_paths, tmp_path: Path) -> None:
    result = train_student(
        "mtl_h-4", tmp_path / "run", coco=(synth.coco_annotations("train"), synth.coco_images("train")),
        cityscapes=synth.cityscapes_root, pose_teacher=teacher_paths[0], seg_teacher=teacher_paths[1],
        cache=tmp_path / "cache", input_size=64, epochs=1, batch_size=4, workers=0, steps_per_epoch=2,
        joint_val=synth.joint_root, task_ratios=(1, 1), class_weights="median", ohem=0.7, init_weights=teacher_paths[0],
        task_weights=(1.0, 0.01), init_lr_factor=0.1,
    )
    student = read_checkpoint(tmp_path / "run" / "student.pt")
    assert set(student) == {"format", "config", "model"}
    assert not any("teacher" in k for k in student["model"])
    assert sum(v.numel() for v in student["model"].values()) == sum(
        v.numel() for v in create_model("mtl_h-4").state_dict().values())
    last = read_checkpoint(result.last_checkpoint)
    assert not any(k.startswith("teachers") for k in last["loss_state"])
    assert last["run_config"]["task_ratios"] == [1.0, 1.0]
    assert (last["run_config"]["extra"]["class_weights"], last["run_config"]["extra"]["ohem"]) == ("median", 0.7)
    assert last["run_config"]["extra"]["init_weights"] == str(teacher_paths[0])
    assert last["run_config"]["extra"]["task_weights"] == [1.0, 0.01]
    # The weights the pose checkpoint gave train at 0.1x the rate, the new segmentation head at the full rate.
    from mtl_ehrnet.training.optim import lr_factor

    loaded = set(read_checkpoint(teacher_paths[0])["model"])
    factors = last["run_config"]["lr_factors"]
    assert 0 < len(factors) < 20
    for name, _ in create_model("mtl_h-4").named_parameters():
        assert lr_factor(name, factors) == (0.1 if name in loaded else 1.0), name
    assert set(result.history[0]) >= {"AP", "mIoU", "score"}
    with pytest.raises(ValueError, match=r"init_lr_factor \(--init-lr-factor\) must be finite and > 0, got -0.5"):
        train_student("mtl_h-4", tmp_path / "negative",
                      coco=(synth.coco_annotations("train"), synth.coco_images("train")),
                      cityscapes=synth.cityscapes_root, init_weights=teacher_paths[0], init_lr_factor=-0.5)
    assert not (tmp_path / "negative").exists()
    with pytest.raises(ValueError, match="give --init-weights"):
        train_student("mtl_h-4", tmp_path / "no_init",
                      coco=(synth.coco_annotations("train"), synth.coco_images("train")),
                      cityscapes=synth.cityscapes_root, init_lr_factor=0.5)
    with pytest.raises(ValueError, match=r"feature hints \(kd.hints\) read the teachers' trunk features"):
        train_student("mtl_h-4", tmp_path / "hints", coco=(synth.coco_annotations("train"), synth.coco_images("train")),
                      cityscapes=synth.cityscapes_root, pose_teacher=teacher_paths[0], cache=tmp_path / "cache",
                      settings=KDSettings(hints=True))
    # Maps of single-pass teachers are not those of flip-averaged ones: their cache is refused.
    with pytest.raises(ValueError, match=r"teacher cache .* was built for .*, not .*teacher_flip"):
        train_student("mtl_h-4", tmp_path / "flip", coco=(synth.coco_annotations("train"), synth.coco_images("train")),
                      cityscapes=synth.cityscapes_root, pose_teacher=teacher_paths[0], seg_teacher=teacher_paths[1],
                      cache=tmp_path / "cache", input_size=64, settings=KDSettings(teacher_flip=True))


@pytest.mark.parametrize("field, value, message", [
    ("labelled_kd_weight", -0.5, r"labelled_kd_weight must be finite and >= 0, got -0.5"),
    ("labelled_kd_weight", float("nan"), r"labelled_kd_weight .* got nan"),
    ("temperature", 0.0, r"temperature must be finite and > 0, got 0.0"),
    ("seg_kd", "mse", r"no seg KD loss 'mse'; registered: none, cwd, kl \(add one with distill.register_kd_loss\)"),
    ("tag_kd", "exact", r"no pose_tags KD loss 'exact'; registered: none, pseudo, relational"),
    ("heatmap_kd", "l1", r"no pose_heatmaps KD loss 'l1'; registered: none, mse"),
    ("balancing", "gradnorm", r"balancing must be one of"),
    ("weights", {"pose/kd_heatmap": 4.0},
     r"weights: no loss term 'pose/kd_heatmap'; terms: pose/heatmaps, "),
    ("weights", {"seg/kd": -1.0}, r"weights\['seg/kd'\] must be finite and >= 0, got -1.0"),
])
def test_kd_settings_refuse_bad_values(field: str, value, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        KDSettings(**{field: value})


def test_every_setting_reaches_the_objective_through_set(monkeypatch, teacher_paths, tmp_path: Path) -> None:  # noqa: ANN001
    import distill.student
    from mtl_ehrnet.cli import main

    calls = []
    monkeypatch.setattr(distill.student, "train_student",
                        lambda *a, **k: calls.append(k) or type("R", (), {"out_dir": Path("x")})())
    args = ["distill", "--student", "mtl_h-4", "--coco", "a.json", "imgs", "--cityscapes", "cs", "--out",
            str(tmp_path / "o")]
    assert main(args + ["--set", "kd.weights={pose/kd_heatmaps: 4, seg/kd: 0.5}", "--set", "kd.teacher_flip=true"]) == 0
    settings = calls[0]["settings"]
    assert settings.weights == {"pose/kd_heatmaps": 4.0, "seg/kd": 0.5} and settings.teacher_flip is True
    assert calls[0]["cache_input_size"] is None and calls[0]["coco"] == ("a.json", "imgs")
    assert (main(args + ["--set", "teachers.cache_input_size=[160, 192, 224]"]) == 0
            and calls[1]["cache_input_size"] == (160, 192, 224))
    student, objective = _objective(teacher_paths, weights=settings.weights)
    assert (objective.current_weights()["pose/kd_heatmaps"] == 4.0
            and objective.current_weights()["pose/heatmaps"] == 1.0)
    assert main(args + ["--set", "kd.weights={seg/kd: -1}"]) == 1
    assert main(args + ["--set", "kd.temprature=2"]) == 1  # a misspelt key is refused with the known ones
    with pytest.raises(SystemExit):
        main(args + ["--set", "=2"])


def test_a_mirrored_cache_serves_mirrored_samples_the_mirrors_pass(
    synth: SyntheticLayout, tmp_path: Path, pooled_image
) -> None:
    """Mirrored samples read the teacher's pass over the mirrored letterbox; replayed, its maps match the
    online teacher as closely as the plain entry's do (the stand-in is mirror-symmetric, so both are exact up
    to interpolation), and a wrong mirror convention would shift every map by a pixel."""
    pose, _ = _datasets(synth)
    teacher = FrozenTeacher(pooled_image)
    cache = TeacherCache(tmp_path / "mirror", {"both": teacher}, 64, {"teacher": "pooled"}, mirrored=True)
    assert cache.identity["mirrored"] and cache.build(pose, "pose", progress=False) == 2 * len(pose)
    entry, mirror = cache.load("pose", 0), cache.load("pose", 0, mirrored=True)
    assert torch.linalg.det(mirror["affine"][:, :2]) < 0 < torch.linalg.det(entry["affine"][:, :2])
    # the stand-in commutes with the mirror (codes equal up to a rounding step)
    assert (mirror["heatmaps_lr"].int() - entry["heatmaps_lr"].flip(-1).int()).abs().max() <= 1
    pose.transform.flip_prob = 1.0
    plain = TeacherCache(tmp_path / "plain", {"both": teacher}, 64, {"teacher": "pooled"})
    plain.build(pose, "pose", progress=False)
    objective = DistillationObjective((14, 27, 54, 107), teacher, None, KDSettings())
    errors = {}
    for name, store in (("plain", plain), ("mirrored", cache)):
        torch.manual_seed(5)  # the same augmentations for both caches
        samples = [CachedTeacherDataset(pose, store, "pose")[i] for i in range(3)]
        if store is cache:
            assert all(torch.equal(s["teacher_affine"], cache.load("pose", i, mirrored=True)["affine"])
                       for i, s in enumerate(samples))
        batch = collate_samples(samples)
        cached = CachedTeachers(objective.source.tasks)(batch)
        online = objective.source({k: v for k, v in batch.items() if not k.startswith("teacher_")})
        valid = cached["valid_lr"].repeat_interleave(2, -1).repeat_interleave(2, -2)[:, None]  # to the stride-2 maps
        inside = valid * (online["heatmaps"] != 0)
        errors[name] = float(((cached["heatmaps"] - online["heatmaps"]).abs() * inside).sum() / inside.sum())
    # The plain entry replayed through the flip is exact up to interpolation for this symmetric stand-in; the
    # mirror's own pass must be as close (one input pixel off either way, it was 1.28-1.30x as far).
    assert errors["mirrored"] < 1.2 * errors["plain"], errors
    with pytest.raises(ValueError, match="no mirrored entries"):
        TeacherCache(tmp_path / "plain", {"both": teacher}, 64, {"teacher": "pooled"}).path("pose", 0, mirrored=True)


def test_replay_swaps_joints_only_where_the_chain_mirrors() -> None:
    maps = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    mirror = torch.tensor([[[-1.0, 0, 3], [0, 1, 0]]])
    # A mirrored sample read from a mirrored entry: the chain is the identity, no channel swap.
    warped, _ = replay_affine(maps, mirror, mirror, (4, 4), 1, 1, flip_index=[1, 0])
    torch.testing.assert_close(warped, maps)


def test_bracketing_cache_sizes_weigh_the_two_scales_around_the_sample() -> None:
    # letterboxes 128 / 160 / 192 show a 160-wide image at 0.8 / 1.0 / 1.2
    identity = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    (first, w_first), (second, w_second) = bracketing_cache_sizes([128, 160, 192], identity * 1.05, (120, 160))
    assert (first, second) == (160, 192) and w_first + w_second == pytest.approx(1.0)
    assert w_second == pytest.approx(math.log(1.05) / math.log(1.2))  # linear in log scale, the nearer first
    (first, w_first), (second, _) = bracketing_cache_sizes([128, 160, 192], identity * 1.19, (120, 160))
    assert (first, second) == (192, 160) and w_first > 0.9
    assert bracketing_cache_sizes([128, 160, 192], identity, (120, 160))[0] == (160, 1.0)  # on a cached scale exactly
    # beyond: nearest alone
    assert bracketing_cache_sizes([128, 160, 192], identity * 1.5, (120, 160)) == ((192, 1.0), (192, 0.0))
    assert bracketing_cache_sizes([128, 160, 192], identity * 0.5, (120, 160)) == ((128, 1.0), (128, 0.0))


def _encoded(maps: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A batch of cache entries holding ``maps`` (B, C, h, w) quantised as the cache stores them."""
    out = {}
    for key, value in maps.items():
        codes, scales = zip(*(quantise(m) for m in value))
        out[key], out[key + "_scale"] = torch.stack(codes), torch.stack(scales)
    return out


def test_a_blended_replay_mixes_both_entries_and_keeps_the_nearest_tags() -> None:
    torch.manual_seed(0)
    identity = torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3)
    first = {**_encoded({"heatmaps": torch.rand(2, 3, 8, 8), "heatmaps_lr": torch.rand(2, 3, 4, 4),
                         "tags": torch.rand(2, 3, 4, 4), "seg": torch.rand(2, 5, 4, 4)}), "affine": identity}
    second = {**_encoded({"heatmaps": torch.rand(2, 3, 8, 8), "heatmaps_lr": torch.rand(2, 3, 4, 4),
                          "seg": torch.rand(2, 5, 4, 4)}), "affine": identity}
    weight = torch.tensor([0.25, 1.0])
    sample = torch.tensor([[0.9, 0.1, 1.0], [-0.1, 0.9, 2.0]]).expand(2, 2, 3)
    blended = replay_cached({**first, **{f"blend_{k}": v for k, v in second.items()}, "blend_weight": weight}, sample,
                            (16, 16), [0, 2, 1])
    alone = replay_cached(first, sample, (16, 16), [0, 2, 1])
    other = replay_cached({**second, "tags": first["tags"], "tags_scale": first["tags_scale"]}, sample, (16, 16),
                          [0, 2, 1])
    for key in ("heatmaps", "heatmaps_lr", "seg"):
        torch.testing.assert_close(blended[key][0], 0.75 * alone[key][0] + 0.25 * other[key][0])
        torch.testing.assert_close(blended[key][1], other[key][1])
    torch.testing.assert_close(blended["tags"], alone["tags"])
    torch.testing.assert_close(blended["valid_lr"], alone["valid_lr"])


def test_a_blending_cache_serves_each_sample_the_sizes_around_its_scale(
    synth: SyntheticLayout, tmp_path: Path, pooled_image
) -> None:
    pose, _ = _datasets(synth)
    teacher = FrozenTeacher(pooled_image)
    cache = TeacherCache(tmp_path / "blend", {"both": teacher}, [64, 96], {"teacher": "pooled"})
    cache.build(pose, "pose", progress=False)
    torch.manual_seed(5)
    data = CachedTeacherDataset(pose, cache, "pose", blend=True)
    samples = [data[i] for i in range(len(pose))]
    mixed = 0
    for sample in samples:
        pair = bracketing_cache_sizes((64, 96), sample["affine"], sample["orig_size"].tolist())
        assert [int(sample["teacher_letterbox"]), int(sample["teacher_blend_letterbox"])] == [size for size, _ in pair]
        assert float(sample["teacher_blend_weight"]) == pytest.approx(pair[1][1])
        assert "teacher_blend_people" not in sample and "teacher_blend_heatmaps_lr" in sample
        mixed += 0 < pair[1][1] and pair[0][0] != pair[1][0]
    assert mixed > 0  # some samples sit between the two scales
    objective = DistillationObjective((14, 27, 54, 107), teacher, None, KDSettings())
    batch = collate_samples(samples[:4])
    cached = CachedTeachers(objective.source.tasks)(batch)
    online = objective.source({k: v for k, v in batch.items() if not k.startswith("teacher_")})
    inside = cached["valid_lr"][:, None] * (online["heatmaps_lr"] != 0)
    error = ((cached["heatmaps_lr"] - online["heatmaps_lr"]).abs() * inside).sum() / inside.sum()
    spread = ((online["heatmaps_lr"] - online["heatmaps_lr"].mean()).abs() * inside).sum() / inside.sum()
    # the stand-in commutes with scale: the mix is as exact as either entry
    assert error < 0.25 * spread, (error, spread)
    assert not CachedTeacherDataset(pose, TeacherCache(tmp_path / "one", {"both": teacher}, 64, {"teacher": "pooled"}),
                                    "pose", blend=True).blend


def test_cache_blend_needs_a_cache_of_several_sizes(synth: SyntheticLayout, tmp_path: Path) -> None:
    for cache, sizes in ((None, [64, 96]), (tmp_path / "cache", [96]), (tmp_path / "cache", None)):
        with pytest.raises(ValueError, match="--cache-blend"):
            train_student("mtl_h-4", tmp_path / "out",
                          coco=(synth.coco_annotations("train"), synth.coco_images("train")),
                          cityscapes=synth.cityscapes_root, cache=cache, cache_input_size=sizes, cache_blend=True)
    assert not (tmp_path / "out").exists()


def test_cache_sizes_are_sorted_distinct_multiples_of_32_and_a_blend_needs_two() -> None:
    assert cache_sizes([192, 160, 192]) == (160, 192) and cache_sizes(96) == (96,)
    assert cache_sizes([160, 192], blend=True) == (160, 192)
    with pytest.raises(ValueError, match=r"--cache-input-size\) must be positive multiples of 32, got \[100\]"):
        cache_sizes([100])
    with pytest.raises(ValueError, match="multiples of 32, got \\[\\]"):
        cache_sizes([])
    with pytest.raises(ValueError, match=r"mixes two cached sizes per sample: .* got \[192\]"):
        cache_sizes([192, 192], blend=True)  # one size named twice is one size
