"""``mtl-ehrnet info`` prints and writes the model table and the joint-vs-separate saving."""
import json
from pathlib import Path

import pytest

from mtl_ehrnet.cli import main


def test_info_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "info.json"
    assert main(["info", "--models", "*_h-4", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| pose_h-4 | pose | 384x384 |" in printed and "thesis convention" in printed
    data = json.loads(out.read_text())
    rows = {r["name"]: r for r in data["models"]}
    assert set(rows) == {"pose_h-4", "seg_h-4", "mtl_h-4"}
    assert rows["pose_h-4"]["thesis_params"] == 3.7e6 and rows["seg_h-4"]["thesis_params"] is None
    (sharing,) = data["sharing"]
    assert sharing["phi"] == -4
    assert sharing["macs_ratio"] == pytest.approx(
        rows["mtl_h-4"]["macs"] / (rows["pose_h-4"]["macs"] + rows["seg_h-4"]["macs"]))
    assert sharing["macs_ratio"] < 0.65


def test_info_unknown_pattern_is_an_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "--models", "resnet*"]) == 1
    assert "no model matches 'resnet*'" in capsys.readouterr().err


def test_info_with_a_foreign_backbone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "info.json"
    assert main(["info", "--backbone", "timm:mobilenetv3_small_100", "--phi", "-4", "--json", str(out)]) == 0
    assert "Backbone timm:mobilenetv3_small_100" in capsys.readouterr().out
    rows = {r["name"]: r for r in json.loads(out.read_text())["models"]}
    assert set(rows) == {"pose_h-4", "seg_h-4", "mtl_h-4"}
    assert all(r["backbone"] == "timm:mobilenetv3_small_100" and r["thesis_params"] is None for r in rows.values())
    assert main(["info", "--models", "pose_h-4", "--json", str(out)]) == 0
    (ours,) = json.loads(out.read_text())["models"]
    assert ours["backbone"] == "efficientnet" and ours["params"] != rows["pose_h-4"]["params"]


def test_info_lists_the_classifiers_beside_table_4_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "info.json"
    assert main(["info", "--models", "efficientnet_b-*", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| efficientnet_b-4 | 128 (129) | 2.05 M [1.3 M] | 1.27 M [1.3 M] |" in printed
    data = json.loads(out.read_text())
    assert data["models"] == [] and [r["phi"] for r in data["classifiers"]] == [-1, -2, -3, -4]
    b3 = data["classifiers"][2]
    assert (b3["input_size"], b3["formula_input_size"], b3["params_1000"]) == (145, 148, 2_795_998)
    assert b3["thesis"]["imagenet_top1"] == 68.5
