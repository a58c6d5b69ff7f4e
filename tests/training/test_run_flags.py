"""train-backbone's settings layer recipe <- YAML <- flags <- --set onto one config tree; --set reads YAML."""
import argparse
from pathlib import Path

import pytest

from mtl_ehrnet.cli import build_parser
from mtl_ehrnet.training.commands import backbone_config
from mtl_ehrnet.training.run_flags import config_override


def _config(*argv: str):
    return backbone_config(build_parser().parse_args(["train-backbone", "--out", "unused", *argv]))


def test_the_thesis_recipe_is_the_default() -> None:
    run = _config("--data", "d", "--phi", "-2").run_config()
    assert (run.epochs, run.optimizer, run.lr, run.warmup_epochs) == (200, "sgd", 0.05, 5)
    assert run.milestones == (35, 65, 95, 125, 155, 185) and run.monitor == "top1"


def test_flags_and_set_reach_the_run_and_the_data() -> None:
    config = _config("--data", "d", "--phi", "-2", "--epochs", "40", "--lr", "0.1",
                     "--set", "data.input_size=48", "--set", "step_every=10", "--set", "run.warmup_epochs=0",
                     "--set", "data.crop_scale=[0.5, 1.0]")
    run = config.run_config()
    assert (run.epochs, run.lr, run.warmup_epochs) == (40, 0.1, 0)
    assert run.milestones == (10, 20, 30)  # x0.1 every step_every epochs after the (empty) warm-up
    assert (config.data.root, config.data.input_size, config.data.crop_scale) == ("d", 48, (0.5, 1.0))


def test_milestones_override_step_every() -> None:
    run = _config("--data", "d", "--phi", "-2", "--epochs", "23", "--set", "run.milestones=[12, 20]").run_config()
    assert run.milestones == (12, 20)


def test_yaml_layers_under_the_flags(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("phi: -3\ndata:\n  root: d\nrun:\n  epochs: 2\n  batch_size: 4\n")
    config = _config("--config", str(tmp_path / "b.yaml"), "--batch-size", "8")
    assert (config.phi, config.run["epochs"], config.run["batch_size"]) == (-3, 2, 8)
    (tmp_path / "flat.yaml").write_text("epochs: 3\noptimizer: adam\n")  # a flat file of RunConfig fields
    run = _config("--config", str(tmp_path / "flat.yaml"), "--data", "d", "--phi", "-4").run_config()
    assert (run.epochs, run.optimizer) == (3, "adam")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "d"], "sets no phi or data"),
        (["--data", "d", "--phi", "-2", "--set", "run.optimizer=lamb"], "optimizer must be adam, adamw or sgd"),
        (["--data", "d", "--phi", "-2", "--set", "data.crop=0.5"], "unknown keys crop; known: root, input_size"),
        (["--data", "d", "--phi", "-2", "--set", "data.crop_scale=[0, 1]"], "crop_scale must satisfy"),
        (["--data", "d", "--phi", "-2", "--set", "run.stepevery=3"], "stepevery"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(argv: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(*argv)


def test_set_reads_its_value_as_yaml() -> None:
    assert config_override("kd.temperature=2") == ("kd.temperature", 2)
    assert config_override("loss.task_weights=[1, 0.01]") == ("loss.task_weights", [1, 0.01])
    assert config_override("loss.ohem=null") == ("loss.ohem", None)
    assert config_override(" student = mtl_h-4") == ("student", "mtl_h-4")
    for bad in ("kd.temperature", "=2"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=VALUE"):
            config_override(bad)
