"""train-backbone's command-line flags map onto RunConfig fields; --set pairs read their value as YAML."""
import argparse

import pytest

from mtl_ehrnet.training.run_flags import add_run_flags, config_override, run_changes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_run_flags(parser)
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
        ]
    )
    assert run_changes(args) == {"optimizer": "adam", "lr": 0.003, "schedule": "poly"}


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
    assert run_changes(args) == {}


def test_bad_optimizer_is_refused_by_the_run_config() -> None:
    from mtl_ehrnet.training import RunConfig

    with pytest.raises(ValueError, match="optimizer must be adam, adamw or sgd"):
        RunConfig(**run_changes(_parser().parse_args(["--optimizer", "lamb"])))


def test_set_reads_its_value_as_yaml() -> None:
    assert config_override("kd.temperature=2") == ("kd.temperature", 2)
    assert config_override("loss.task_weights=[1, 0.01]") == ("loss.task_weights", [1, 0.01])
    assert config_override("loss.ohem=null") == ("loss.ohem", None)
    assert config_override(" student = mtl_h-4") == ("student", "mtl_h-4")
    for bad in ("kd.temperature", "=2"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=VALUE"):
            config_override(bad)
