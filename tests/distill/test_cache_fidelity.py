"""The cache fidelity benchmark: near-exact for a teacher that commutes with the augmentation, not for one that
does not."""

import json
from typing import Dict

import pytest
import torch

from cache_fidelity import cache_fidelity, main
from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import save_checkpoint


class _Positional(torch.nn.Module):
    """Maps that are a fixed wave pattern of the input frame, whatever the image: no warp of cached maps
    reproduces them on a crop at another scale and offset."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = {}
        for key, value in self.inner(images).items():
            c, h, w = value.shape[1:]
            phase = torch.arange(c, dtype=torch.float32)[:, None, None]
            ys, xs = torch.meshgrid(
                torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
            )
            out[key] = (torch.sin(0.9 * xs + phase) + torch.cos(0.7 * ys + 0.5 * phase)).expand_as(value).contiguous()
        return out


def test_equivariant_teacher_replays_almost_exactly_and_a_positional_one_does_not(synth, pooled_image) -> None:
    augmentation = {"max_rotation": 20.0, "scale_range": (0.8, 1.25), "flip_prob": 0.0}
    good = cache_fidelity(synth.root, {"pose": pooled_image, "seg": pooled_image}, 64, [96], 4, augmentation)["96"][
        "all"
    ]
    bad = cache_fidelity(
        synth.root, {"pose": _Positional(pooled_image), "seg": _Positional(pooled_image)}, 64, [96], 4, augmentation
    )["96"]["all"]
    assert good["pose_samples"] == 4 and good["seg_samples"] == 4
    # What is left for the equivariant stand-in is interpolation and the black border (its maps are not 0 there).
    assert good["heatmaps_rel_err"] < 0.15 and good["heatmaps_lr_rel_err"] < 0.15 and good["seg_agreement"] > 0.85
    assert bad["heatmaps_rel_err"] > 5 * good["heatmaps_rel_err"] and bad["seg_agreement"] < 0.5


def test_samples_are_split_by_mirror(synth, pooled_image) -> None:
    mirrored = cache_fidelity(synth.root, {"pose": pooled_image}, 64, [64], 3, {"flip_prob": 1.0})["64"]
    assert mirrored["plain"]["pose_samples"] == 0 and mirrored["mirrored"]["pose_samples"] == 3
    # Channels are identical, so the joint swap of a mirrored sample changes nothing: still near exact.
    assert mirrored["mirrored"]["heatmaps_rel_err"] < 0.35 and abs(mirrored["mirrored"]["peak_dx"]) < 0.5


def test_cli_prints_every_cache_size_and_needs_a_teacher(synth, tmp_path, capsys) -> None:
    teacher = save_checkpoint(tmp_path / "seg.pt", create_model("seg_h-4"))
    assert (
        main(
            [
                "--data",
                str(synth.root),
                "--seg-teacher",
                str(teacher),
                "--input-size",
                "64",
                "--cache-sizes",
                "64",
                "96",
                "--samples",
                "1",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert (
        set(printed) == {"64", "96"}
        and printed["96"]["all"]["seg_samples"] == 1
        and 0 <= printed["96"]["all"]["seg_agreement"] <= 1
    )
    with pytest.raises(SystemExit):
        main(["--data", str(synth.root)])
    assert "give --pose-teacher" in capsys.readouterr().err


def test_a_mirrored_cache_is_compared_beside_the_plain_one(synth, pooled_image) -> None:
    result = cache_fidelity(synth.root, {"pose": pooled_image}, 64, [96], 3, {"flip_prob": 1.0}, mirrored=True)
    assert set(result) == {"96", "96 mirrored"}
    plain, mirrored = result["96"]["mirrored"], result["96 mirrored"]["mirrored"]
    assert plain["pose_samples"] == mirrored["pose_samples"] == 3
    # The stand-in commutes with the mirror, so both replay near exactly; a wrong mirror affine would not.
    assert mirrored["heatmaps_rel_err"] < 1.2 * plain["heatmaps_rel_err"] + 0.01 and abs(mirrored["peak_dx"]) < 0.5


def test_a_blended_cache_is_compared_beside_its_nearest_size_reading(synth, pooled_image) -> None:
    result = cache_fidelity(
        synth.root, {"pose": pooled_image}, 64, [96, [64, 96]], 4, {"max_rotation": 0.0}, mirrored=True, blend=True
    )
    assert set(result) == {
        "96",
        "64,96",
        "96 mirrored",
        "64,96 mirrored",
        "64,96 blend",
        "64,96 mirrored blend",
    }  # one size has nothing to blend
    nearest, blended = result["64,96"]["all"], result["64,96 blend"]["all"]
    assert blended["pose_samples"] == nearest["pose_samples"] == 4
    # The stand-in commutes with scale, so a mix of two sizes replays it as closely as the nearest alone.
    assert blended["heatmaps_rel_err"] < 1.2 * nearest["heatmaps_rel_err"] + 0.01


def test_cli_passes_translation_and_mirror_share_to_the_augmentation(synth, tmp_path, capsys) -> None:
    teacher = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4"))
    common = [
        "--data",
        str(synth.root),
        "--pose-teacher",
        str(teacher),
        "--input-size",
        "64",
        "--cache-sizes",
        "96",
        "--samples",
        "4",
    ]
    assert main(common + ["--flip-prob", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["96"]["mirrored"]["pose_samples"] == 4
    assert main(common + ["--flip-prob", "0", "--max-translate", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["96"]["plain"]["pose_samples"] == 4
