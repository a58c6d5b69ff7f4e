"""Shared command-line flags map onto RunConfig fields and TrainTransform options."""
import argparse

import pytest

from mtl_ehrnet.training.run_flags import (
    add_augmentation_flags,
    add_ground_truth_flags,
    add_run_flags,
    augmentation_options,
    ground_truth_options,
    run_changes,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_run_flags(parser)
    add_augmentation_flags(parser)
    add_ground_truth_flags(parser)
    return parser


def test_only_the_flags_given_are_changed() -> None:
    args = _parser().parse_args(
        [
            "--optimizer",
            "adam",
            "--lr",
            "0.003",
            "--schedule",
            "poly",
            "--scale-range",
            "0.9",
            "1.2",
            "--max-rotation",
            "10",
        ]
    )
    assert run_changes(args) == {"optimizer": "adam", "lr": 0.003, "schedule": "poly"}
    assert augmentation_options(args) == {"scale_range": (0.9, 1.2), "max_rotation": 10.0}


def test_milestones_reach_the_step_schedule() -> None:
    from mtl_ehrnet.training import pose_recipe

    changes = run_changes(_parser().parse_args(["--milestones", "12", "20"]))
    assert changes == {"milestones": (12.0, 20.0)}
    assert pose_recipe(23, **changes).milestones == (12.0, 20.0)
    assert pose_recipe(23).milestones == (15, 20)  # the thesis's 2/3 and 13/15
    with pytest.raises(ValueError, match="milestones are epochs and must be >= 0"):
        pose_recipe(23, milestones=(-1,))


def test_no_flags_keep_the_recipe() -> None:
    args = _parser().parse_args([])
    assert run_changes(args) == {} and augmentation_options(args) == {}


def test_bad_optimizer_is_refused_by_the_run_config() -> None:
    from mtl_ehrnet.training import RunConfig

    with pytest.raises(ValueError, match="optimizer must be adam, adamw or sgd"):
        RunConfig(**run_changes(_parser().parse_args(["--optimizer", "lamb"])))


def test_ground_truth_flags() -> None:
    assert ground_truth_options(_parser().parse_args([])) == {
        "ae_weight": 1e-3,
        "ae_push": "exp",
        "class_weights": "none",
        "ohem": None,
    }
    args = _parser().parse_args(
        ["--ae-weight", "0.01", "--ae-push", "max", "--class-weights", "median", "--ohem", "0.7"]
    )
    assert ground_truth_options(args) == {"ae_weight": 0.01, "ae_push": "max", "class_weights": "median", "ohem": 0.7}
