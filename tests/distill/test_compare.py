"""``mtl-ehrnet compare`` writes the joint-versus-separate table with the contract's keys."""
import json
from pathlib import Path

import pytest
import torch

from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import save_checkpoint
from mtl_ehrnet.cli import main
from mtl_ehrnet.data import SyntheticLayout


def test_compare_rows_keys_nulls_and_savings(synth: SyntheticLayout, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    paths = {name: save_checkpoint(tmp_path / f"{name}.pt", create_model(model, input_size=64))
             for name, model in (("pose_student_gt", "pose_h-4"), ("seg_student_gt", "seg_h-4"), ("joint_student_kd", "mtl_h-4"))}
    out = tmp_path / "cmp"
    args = ["compare", "--out", str(out), "--joint-val", str(synth.joint_root), "--latency-runs", "2"]
    for name, path in paths.items():
        args += [f"--{name.replace('_', '-')}", str(path)]
    assert main(args) == 0
    rows = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in rows] == ["pose_student_gt", "seg_student_gt", "joint_student_kd"]
    for row in rows:
        assert {"name", "ap", "miou", "params", "macs", "latency_ms"} <= set(row)
    by = {r["name"]: r for r in rows}
    assert by["pose_student_gt"]["miou"] is None and by["seg_student_gt"]["ap"] is None
    assert by["joint_student_kd"]["ap"] is not None and by["joint_student_kd"]["miou"] is not None
    saving = json.loads((out / "savings.json").read_text())
    assert saving["macs_ratio"] == pytest.approx(by["joint_student_kd"]["macs"] / (by["pose_student_gt"]["macs"] + by["seg_student_gt"]["macs"]))
    assert saving["macs_ratio"] < 1
    assert (out / "compare.png").stat().st_size > 1000 and "| joint_student_kd |" in (out / "compare.md").read_text()
    assert main(["compare", "--out", str(out), "--joint-val", str(synth.joint_root)]) == 1
    assert "give at least one row" in capsys.readouterr().err
