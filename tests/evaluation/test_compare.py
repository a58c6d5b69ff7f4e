"""``mtl-ehrnet compare`` writes the joint-versus-separate table with the contract's keys."""
import json
from pathlib import Path

import pytest
import torch

from mtl_ehrnet import create_model
from mtl_ehrnet.checkpoint import save_checkpoint
from mtl_ehrnet.cli import main
from mtl_ehrnet.data import SyntheticLayout


def test_compare_rows_keys_nulls_and_savings(
    synth: SyntheticLayout, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    paths = {
        name: save_checkpoint(tmp_path / f"{name}.pt", create_model(model, input_size=64))
        for name, model in (
            ("pose_student_gt", "pose_h-4"),
            ("seg_student_gt", "seg_h-4"),
            ("joint_student_kd", "mtl_h-4"),
        )
    }
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
    assert saving["macs_ratio"] == pytest.approx(
        by["joint_student_kd"]["macs"] / (by["pose_student_gt"]["macs"] + by["seg_student_gt"]["macs"])
    )
    assert saving["macs_ratio"] < 1
    assert (out / "compare.png").stat().st_size > 1000 and "| joint_student_kd |" in (out / "compare.md").read_text()
    assert main(["compare", "--out", str(out), "--joint-val", str(synth.joint_root)]) == 1
    assert "give at least one row" in capsys.readouterr().err


def test_latency_rounds_keep_a_passing_load_off_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from evaluation import compare

    calls = []

    def fake_latency(model, size, **kwargs):  # noqa: ANN001, ANN003, ANN202 - a load on the machine at calls 2 and 3
        calls.append(model)
        return SimpleNamespace(forward=SimpleNamespace(median_ms=300.0 if len(calls) in (2, 3) else 10.0))

    monkeypatch.setattr(compare, "measure_latency", fake_latency)
    a, b = torch.nn.Identity(), torch.nn.Identity()
    latency = compare.latencies_in_rounds({"a": (a, (8, 8)), "b": (b, (8, 8))}, rounds=3)
    # In rounds (a b a b a b) the load touches one sample of each row; one row after the other (a a a b b b)
    # it would have taken two of a's three.
    assert calls == [a, b] * 3
    assert latency == {"a": 10.0, "b": 10.0}
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        compare.latencies_in_rounds({"a": (a, (8, 8))}, rounds=0)


def test_rows_naming_one_checkpoint_are_measured_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evaluation import compare

    evaluated, timed = [], []
    monkeypatch.setattr(
        compare, "evaluate_joint", lambda model, root: evaluated.append(model) or {"AP": 0.5, "mIoU": None}
    )
    monkeypatch.setattr(
        compare,
        "latencies_in_rounds",
        lambda models, runs, threads: timed.append(sorted(models)) or {n: 7.0 for n in models},
    )
    pose = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4", input_size=64))
    rows = compare.compare_rows({"pose_teacher": pose, "pose_student_gt": tmp_path / "." / "pose.pt"}, tmp_path)
    assert len(evaluated) == 1 and timed == [["pose_teacher"]]
    teacher, student = rows
    assert student["name"] == "pose_student_gt" and student["same_as"] == "pose_teacher" and "same_as" not in teacher
    assert all(student[k] == teacher[k] for k in ("ap", "params", "macs", "latency_ms"))
    assert "| pose_student_gt (= pose_teacher) |" in compare.markdown(rows, {})
    assert compare.point_labels(rows) == {"pose_teacher": "pose_teacher = pose_student_gt"}  # one point in the plot


def test_compare_times_every_model_on_the_path_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evaluation import compare
    from mtl_ehrnet.inference.runners import TorchRunner

    timed = []
    monkeypatch.setattr(compare, "evaluate_joint", lambda model, root: {"AP": 0.5, "mIoU": None})
    monkeypatch.setattr(compare, "latencies_in_rounds",
                        lambda models, runs, threads: timed.extend(m for m, _ in models.values()) or
                        {n: 7.0 for n in models})
    pose = save_checkpoint(tmp_path / "pose.pt", create_model("pose_h-4", input_size=64))
    from mtl_ehrnet.inference.deployment import DeploymentPath

    path = DeploymentPath("fp32", "torch", "cpu", channels_last=True)
    rows = compare.compare_rows({"pose_teacher": pose}, tmp_path, path=path)
    assert isinstance(timed[0], TorchRunner) and timed[0].path == path
    assert rows[0]["latency_path"] == str(path) and f"CPU latency ({path})" in compare.markdown(rows, {})
    # The scored model is not the timed copy, and an INT8 path without images is refused.
    with pytest.raises(ValueError, match="INT8 path needs calibration images"):
        compare.compare_rows({"pose_teacher": pose}, tmp_path, path=DeploymentPath("int8", "onnxruntime", "cpu"))
    plain = compare.compare_rows({"pose_teacher": pose}, tmp_path)
    assert plain[0]["latency_path"] == "fp32 torch eager" and not isinstance(timed[-1], TorchRunner)
