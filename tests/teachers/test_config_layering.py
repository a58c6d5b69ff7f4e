"""train-teacher layers its settings: the task's recipe, under the --config YAML's fields, under the flags typed."""
import re
from pathlib import Path
from typing import List

import pytest

from mtl_ehrnet.checkpoint import read_checkpoint
from mtl_ehrnet.cli import main
from mtl_ehrnet.data import SyntheticLayout
from mtl_ehrnet.training.metric_log import read_log


def _seg(synth: SyntheticLayout, out: Path, config: Path, *extra: str) -> List[str]:
    return ["train-teacher", "seg", "--model", "seg_h-4", "--cityscapes", str(synth.cityscapes_root),
            "--set", "data.input_size=64", "--workers", "0", "--out", str(out), "--config", str(config), *extra]


def test_the_yaml_sets_the_epochs_and_the_recipe_keeps_its_monitor(synth: SyntheticLayout, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 2\nsteps_per_epoch: 1\nbatch_size: 2\nval_every: 1\nlr: 0.003\n")  # no monitor
    assert main(_seg(synth, tmp_path / "yaml", config)) == 0
    assert [r["epoch"] for r in read_log(tmp_path / "yaml" / "log.jsonl", "val")] == [1, 2]
    assert (tmp_path / "yaml" / "best.pt").is_file()  # the seg recipe's mIoU selects it
    stored = read_checkpoint(tmp_path / "yaml" / "last.pt")["run_config"]
    assert stored["epochs"] == 2 and stored["lr"] == 0.003 and stored["monitor"] == "mIoU"
    assert stored["optimizer"] == "sgd" and stored["schedule"] == "poly"  # the recipe under the YAML
    # A typed flag beats the YAML.
    assert main(_seg(synth, tmp_path / "typed", config, "--epochs", "1", "--lr", "0.005")) == 0
    stored = read_checkpoint(tmp_path / "typed" / "last.pt")["run_config"]
    assert stored["epochs"] == 1 and stored["lr"] == 0.005


def test_an_unknown_yaml_key_is_refused_naming_the_file(synth: SyntheticLayout, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: 2\nlearning_rate: 0.1\n")
    assert main(_seg(synth, tmp_path / "out", config)) != 0
    assert re.search(r"bad.yaml: unknown run config keys \['learning_rate'\]; known keys: .*'lr'",
                     capsys.readouterr().err)
    assert not (tmp_path / "out" / "last.pt").exists()


def test_its_own_config_yaml_trains_the_same_weights(synth: SyntheticLayout, tmp_path: Path) -> None:
    import torch

    config = tmp_path / "run.yaml"
    config.write_text("epochs: 1\nsteps_per_epoch: 2\nbatch_size: 2\nval_every: 0\ndevice: cpu\n")
    assert main(_seg(synth, tmp_path / "first", config, "--set", "loss.class_weights=median")) == 0
    written = (tmp_path / "first" / "config.yaml").read_text()
    assert "class_weights: median" in written and "task: seg" in written
    assert main(["train-teacher", "seg", "--config", str(tmp_path / "first" / "config.yaml"),
                 "--out", str(tmp_path / "again")]) == 0
    a, b = (read_checkpoint(tmp_path / run / "last.pt")["model"] for run in ("first", "again"))
    assert all(torch.equal(a[k], b[k]) for k in a)
