"""The compact teacher-cache entry: uint8 maps within half a step, deflated on disk and back bit for bit,
people grouped at build time that replay onto augmented samples as the online grouping would, and at least
5x fewer bytes than fp16 maps at both strides."""
from typing import Dict

import pytest
import torch

from distill.cache_codec import dequantise, encode_entry, entry_bytes, pack, quantise, unpack
from distill.pose_kd import pseudo_joints
from distill.replay import replay_cached, replay_people
from mtl_ehrnet.data.skeleton import COCO_FLIP_INDEX

K, H, W = 17, 32, 32


def _people_maps(centres=((8.0, 10.0), (23.0, 20.0)), tags=(-1.0, 1.0)) -> Dict[str, torch.Tensor]:
    """(1, K, H, W) heatmaps with one Gaussian peak per person and joint (each joint a pixel apart, left
    joints left of right ones), and tags constant per person."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    heatmaps, tag_maps = torch.zeros(K, H, W), torch.zeros(K, H, W)
    for (cx, cy), tag in zip(centres, tags):
        for j in range(K):
            x, y = cx + (j % 3) - 1, cy + (j // 3) - 2
            peak = torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 2)
            heatmaps[j] = torch.maximum(heatmaps[j], peak)
            tag_maps[j] = torch.where(peak > 0.05, torch.full_like(peak, tag), tag_maps[j])
    return {"heatmaps_lr": heatmaps[None], "tags": tag_maps[None]}


def test_quantised_maps_come_back_within_half_a_step() -> None:
    torch.manual_seed(0)
    maps = torch.randn(5, 12, 9) * torch.tensor([0.01, 1.0, 10.0, 100.0, 0.0])[:, None, None]
    codes, scale = quantise(maps)
    assert codes.dtype == torch.uint8 and scale.shape == (5, 2)
    back = dequantise(codes[None], scale[None])[0]
    step = scale[:, 1, None, None]
    assert ((back - maps).abs() <= 0.5 * step + 1e-6 * maps.abs().amax()).all()
    assert torch.equal(back[4], maps[4])  # a constant channel is exact
    assert codes.amin() == 0 and codes.amax() == 255  # every channel's range uses the whole byte


@pytest.mark.parametrize("tag_kd, stored, absent", [("pseudo", "people", "tags"), ("relational", "tags", "people"),
                                                    ("none", "heatmaps_lr", "people")])
def test_an_entry_stores_what_its_tag_distillation_reads(tag_kd: str, stored: str, absent: str) -> None:
    maps = {k: v[0] for k, v in _people_maps().items()}
    maps.update(heatmaps=torch.rand(K, 2 * H, 2 * W), seg=torch.randn(19, H, W))
    entry = encode_entry(maps, torch.eye(2, 3), tag_kd)
    assert stored in entry and absent not in entry and entry["heatmaps"].shape == (K, 2 * H, 2 * W)
    assert entry["seg"].dtype == entry["heatmaps_lr"].dtype == entry["heatmaps"].dtype == torch.uint8
    if tag_kd == "pseudo":
        assert entry["people"].shape == (2, K, 3) and bool((entry["people"][..., 2] == 1).all())
    with pytest.raises(ValueError, match="no pose_tags KD loss .exact.; registered: none, pseudo, relational"):
        encode_entry(maps, torch.eye(2, 3), "exact")


def test_cached_people_replay_as_the_online_grouping_of_the_same_view() -> None:
    maps = _people_maps()
    entry = encode_entry({k: v[0] for k, v in maps.items()}, torch.eye(2, 3), "pseudo")
    people, letterbox = entry["people"][None], entry["affine"][None]
    online = pseudo_joints(maps["heatmaps_lr"], maps["tags"])[:, :2]
    same = replay_people(people, letterbox, torch.eye(2, 3)[None], (H, W), 4, 4, COCO_FLIP_INDEX)
    assert torch.equal(same, online)
    # A mirrored sample: the mirror of the input (4W pixels wide) is the mirror of the stride-4 maps.
    mirror = torch.tensor([[[-1.0, 0, 4 * W - 1], [0, 1, 0]]])
    flipped = {k: v.flip(-1)[:, COCO_FLIP_INDEX] for k, v in maps.items()}
    online_mirrored = pseudo_joints(flipped["heatmaps_lr"], flipped["tags"])[:, :2]
    replayed = replay_people(people, letterbox, mirror, (H, W), 4, 4, COCO_FLIP_INDEX)

    def as_set(joints: torch.Tensor):  # people in any order
        return sorted(tuple(p.flatten().tolist()) for p in joints[0])

    assert as_set(replayed) == as_set(online_mirrored) and not torch.equal(replayed, online)
    # Half the scale at stride 2 in a student input of the same size: every joint at half its coordinates.
    half = replay_people(people, letterbox, 0.5 * torch.eye(2, 3)[None], (2 * H, 2 * W), 2, 4, COCO_FLIP_INDEX)
    assert torch.equal(half[..., 1], same[..., 1])
    assert ((half[..., 0] // (2 * W) - same[..., 0] // W).abs() <= 1).all()


def test_a_batch_replays_people_to_joints_and_both_strides_of_heatmaps() -> None:
    maps = _people_maps()
    maps["heatmaps"] = torch.rand(1, K, 2 * H, 2 * W)
    entry = encode_entry({**{k: v[0] for k, v in maps.items()}, "seg": torch.randn(19, H, W)}, torch.eye(2, 3))
    batch = {k: v[None] for k, v in entry.items()}
    replayed = replay_cached(batch, torch.eye(2, 3)[None], (4 * H, 4 * W), COCO_FLIP_INDEX)
    assert replayed["joints"].shape == (1, 2, K, 2) and replayed["seg"].shape == (1, 19, H, W)
    for key in ("heatmaps", "heatmaps_lr"):  # each from its own stride, within half a step
        torch.testing.assert_close(replayed[key], maps[key], atol=0.5 / 255 + 1e-3, rtol=0)


def test_a_packed_entry_unpacks_bit_for_bit_and_a_damaged_one_is_named(tmp_path) -> None:
    maps = {k: v[0] for k, v in _people_maps().items()}
    maps.update(heatmaps=torch.rand(K, 2 * H, 2 * W), seg=torch.randn(19, H, W))
    entry = encode_entry(maps, torch.eye(2, 3), "relational")
    path = tmp_path / "0.pt"
    torch.save(pack(entry), path)
    back = unpack(torch.load(path, weights_only=True))
    assert back.keys() == entry.keys() and all(torch.equal(back[k], entry[k]) for k in entry)
    damaged = pack(entry)
    damaged["seg"] = damaged["seg"][:-20]
    with pytest.raises(ValueError, match=r"cache/7.pt: its 'seg' map is damaged"):
        unpack(damaged, "cache/7.pt")


def test_an_entry_is_at_least_five_times_smaller_than_fp16_maps_at_both_strides() -> None:
    """At the quick start's 192 letterbox (maps of 48 at stride 4), 17 joints and 19 classes: heatmaps near
    zero but at the people, as a teacher's are, and class logits of full entropy (no help from deflate)."""
    torch.manual_seed(0)
    h = w = 48
    ys, xs = torch.meshgrid(torch.arange(2 * h, dtype=torch.float32), torch.arange(2 * w, dtype=torch.float32),
                            indexing="ij")
    peaks = torch.rand(K, 2, 2) * 2 * h  # two people
    fine = sum(torch.exp(-((xs - peaks[:, p, 0, None, None]) ** 2 + (ys - peaks[:, p, 1, None, None]) ** 2) / 8)
               for p in range(2))
    outputs = {"heatmaps": fine, "heatmaps_lr": fine[:, ::2, ::2].contiguous(), "tags": torch.randn(K, h, w),
               "seg": torch.randn(19, h, w)}
    fp16 = {k: v.half() for k, v in outputs.items()}
    fp16["affine"] = torch.eye(2, 3)
    # The default tag distillation stores people; the relational one its tags as a byte map too.
    assert entry_bytes(pack(encode_entry(outputs, torch.eye(2, 3), "pseudo"))) * 5 <= entry_bytes(fp16)
    assert entry_bytes(pack(encode_entry(outputs, torch.eye(2, 3), "relational"))) * 4 <= entry_bytes(fp16)
