"""Published checkpoints: parity with the reference code's own outputs, every layout and wrapping,
refusals, and the converted file through ``load_model``, ONNX and the command line."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

import mtl_ehrnet
from mtl_ehrnet.checkpoint import load_model
from mtl_ehrnet.cli import main
from mtl_ehrnet.convert import convert_checkpoint

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "reference"
LAYOUTS = Path(__file__).parent / "data" / "reference_layouts.json.gz"
TOLERANCE = 1e-4  # of the reference output's largest magnitude


def _fixture(name: str) -> Dict:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"reference fixture {path} not present")
    return torch.load(path, weights_only=True)


def _reference_order(outputs: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
    """Our outputs in the reference's order: pose = [stride-4 heatmaps + tags, stride-2 heatmaps]; seg = [logits]."""
    if "seg" in outputs:
        return [outputs["seg"]]
    return [torch.cat((outputs["heatmaps_lr"], outputs["tags"]), 1), outputs["heatmaps"]]


def _relative_error(ours: List[torch.Tensor], reference: List[torch.Tensor]) -> float:
    assert [o.shape for o in ours] == [r.shape for r in reference]
    return max(((o - r).abs().max() / r.abs().max()).item() for o, r in zip(ours, reference))


CASES = [("efficienthrnet_h-4_random.pt", "pose_h-4"), ("hrnet_w18_small_v2_seg_random.pt", "hrnet_w18_small_v2_seg")]


@pytest.mark.parametrize("fixture, name", CASES)
def test_converted_model_reproduces_the_reference_outputs(tmp_path: Path, fixture: str, name: str) -> None:
    data = _fixture(fixture)
    torch.save(data["state_dict"], tmp_path / "published.pth")
    model, report = convert_checkpoint(tmp_path / "published.pth")
    assert model.config.name == name and not model.training
    with torch.no_grad():
        ours = _reference_order(model(data["input"]))
    assert _relative_error(ours, data["outputs"]) <= TOLERANCE
    assert len(report.mapped) + len(report.folded) == len(data["state_dict"])


def test_efficienthrnet_needs_its_tf_padding_and_biases(tmp_path: Path) -> None:
    """Without the TF "SAME" padding, or with the transition biases dropped, the outputs differ: the parity
    above depends on both."""
    data = _fixture("efficienthrnet_h-4_random.pt")
    torch.save(data["state_dict"], tmp_path / "published.pth")
    model, _ = convert_checkpoint(tmp_path / "published.pth")
    symmetric = mtl_ehrnet.build_model("pose_h-4").eval()
    symmetric.load_state_dict(model.state_dict())
    no_bias = {
        k: (torch.zeros_like(v) if k.endswith(".0.bias") and k.startswith("trans") else v)
        for k, v in data["state_dict"].items()
    }
    torch.save(no_bias, tmp_path / "no_bias.pth")
    with torch.no_grad():
        assert _relative_error(_reference_order(symmetric(data["input"])), data["outputs"]) > TOLERANCE
        unbiased, _ = convert_checkpoint(tmp_path / "no_bias.pth")
        assert _relative_error(_reference_order(unbiased(data["input"])), data["outputs"]) > TOLERANCE


@pytest.mark.parametrize("fixture, name", CASES)
def test_onnx_export_of_the_converted_model_reproduces_the_reference(tmp_path: Path, fixture: str, name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    from mtl_ehrnet.inference.onnx_export import export_onnx

    data = _fixture(fixture)
    model = mtl_ehrnet.create_model(name, weights=FIXTURES / fixture)
    size = tuple(data["input"].shape[-2:])
    export_onnx(model, tmp_path / "model.onnx", size)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    produced = dict(zip(names, session.run(None, {"images": data["input"].numpy()})))
    ours = _reference_order({k: torch.from_numpy(v) for k, v in produced.items()})
    assert _relative_error(ours, data["outputs"]) <= TOLERANCE


@pytest.mark.parametrize("wrap", ["state_dict", "module+model"])
def test_wrappings_round_trip_through_the_command_and_load_model(tmp_path: Path, wrap: str) -> None:
    data = _fixture("hrnet_w18_small_v2_seg_random.pt")
    state = dict(data["state_dict"])
    if "model" in wrap:
        state = {f"model.{k}": v for k, v in state.items()}
        state["loss.criterion.weight"] = torch.ones(19)
    if wrap.startswith("module"):
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"state_dict": state, "epoch": 484} if wrap == "state_dict" else state, tmp_path / "src.pth")
    out = tmp_path / "ours.pt"
    assert main(["convert", str(tmp_path / "src.pth"), "--model", "hrnet_w18_small_v2_seg", "--out", str(out)]) == 0
    stored = torch.load(out, weights_only=True)
    assert stored["config"]["body"]["fuse_upsample"] == "bilinear"
    assert ("loss.criterion.weight" in stored["conversion"]["ignored"]) == ("model" in wrap)
    model = load_model(out)
    with torch.no_grad():
        assert _relative_error(_reference_order(model(data["input"])), data["outputs"]) <= TOLERANCE


def _marked_state(rows: List[Tuple[str, List[int]]]) -> Dict[str, torch.Tensor]:
    """Each tensor filled with its own position in the file, so that its destination can be checked."""
    return {key: torch.full(shape, float(i)) for i, (key, shape) in enumerate(rows)}


def _layouts() -> Dict[str, List]:
    with gzip.open(LAYOUTS, "rt") as handle:
        return json.load(handle)


LAYOUT_MODELS = {
    "efficienthrnet_h0": "pose_h0",
    "efficienthrnet_h-1": "pose_h-1",
    "efficienthrnet_h-2": "pose_h-2",
    "efficienthrnet_h-3": "pose_h-3",
    "efficienthrnet_h-4": "pose_h-4",
    "higherhrnet_w32": "higherhrnet_w32",
    "higherhrnet_w48": "higherhrnet_w48",
    "hrnet_w18_small_v1_seg": "hrnet_w18_small_v1_seg",
    "hrnet_w18_small_v2_seg": "hrnet_w18_small_v2_seg",
    "hrnet_w48_seg": "hrnet_w48_seg",
}


@pytest.mark.parametrize("layout", sorted(LAYOUT_MODELS))
def test_every_reference_tensor_lands_once_in_place(tmp_path: Path, layout: str) -> None:
    rows = _layouts()[layout]
    state = _marked_state(rows)
    if layout.startswith("efficienthrnet"):  # some released files carry stride-2 tags: 34 channels
        state["final_layers.1.weight"] = torch.cat([state["final_layers.1.weight"]] * 2)
        state["final_layers.1.bias"] = torch.cat([state["final_layers.1.bias"]] * 2)
    torch.save(state, tmp_path / f"{layout}.pth")
    model, report = convert_checkpoint(tmp_path / f"{layout}.pth")
    assert model.config.name == LAYOUT_MODELS[layout]
    ours = model.state_dict()
    assert sorted(report.mapped.values()) == sorted(set(report.mapped.values()))  # no tensor of ours filled twice
    folded_means = {f"{bn}.running_mean" for bn in report.folded.values()}
    for source, target in report.mapped.items():
        if target in folded_means:
            continue
        assert torch.all(ours[target] == state[source].flatten()[0]), (source, target)
    for source, bn in report.folded.items():  # running_mean - bias
        mean = next(k for k, v in report.mapped.items() if v == f"{bn}.running_mean")
        assert torch.all(ours[f"{bn}.running_mean"] == state[mean].flatten()[0] - state[source].flatten()[0])
    if layout.startswith("efficienthrnet"):
        assert "final_layers.1.weight" in report.ignored and ours["heads.pose.final_hr.weight"].shape[0] == 17
    explained = set(report.mapped) | set(report.folded)
    assert explained == set(state)


def test_another_phi_is_refused_naming_both(tmp_path: Path) -> None:
    data = _fixture("efficienthrnet_h-4_random.pt")
    torch.save({"state_dict": data["state_dict"]}, tmp_path / "h-4.pth")
    with pytest.raises(ValueError, match=r"an EfficientHRNet phi=-4 checkpoint.*you asked for pose_h0 \(phi=0\)"):
        convert_checkpoint(tmp_path / "h-4.pth", "pose_h0")
    with pytest.raises(
        ValueError, match=r"features\.0\.1\.weight \(24, 3, 3, 3\) -> backbone\.features\.0\.0\.weight \(32, 3, 3, 3\)"
    ):
        mtl_ehrnet.create_model("pose_h0", weights=tmp_path / "h-4.pth")
    with pytest.raises(ValueError, match="is not a 'higherhrnet' file .* looks like a 'ehr' file"):
        convert_checkpoint(tmp_path / "h-4.pth", source="higherhrnet")


def test_unexplained_or_missing_tensors_are_refused(tmp_path: Path) -> None:
    state = dict(_fixture("hrnet_w18_small_v2_seg_random.pt")["state_dict"])
    torch.save({**state, "aux_head.weight": torch.zeros(3)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"aux_head\.weight \(3,\) -> nothing of ours"):
        convert_checkpoint(tmp_path / "extra.pth")
    del state["stage3.0.branches.0.0.conv1.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"nothing -> body\.stages\.1\.modules_\.0\.branches\.0\.0\.conv1\.0\.weight"):
        convert_checkpoint(tmp_path / "missing.pth")


def test_unknown_layout_lists_the_known_ones(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="unknown checkpoint layout.*ehr.*higherhrnet.*hrnet_seg.*torchvision.*timm"):
        convert_checkpoint(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="unknown source 'caffe'"):
        convert_checkpoint(tmp_path / "other.pth", source="caffe")


class _RunsCode:
    def __reduce__(self):  # unpickling this would call print
        return (print, ("code ran",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"state_dict": _RunsCode()}, handle)
    with pytest.raises(ValueError, match="refusing to load"):
        convert_checkpoint(tmp_path / "evil.pth")
    assert "code ran" not in capsys.readouterr().out


def test_converted_file_keeps_its_options_through_create_model(tmp_path: Path) -> None:
    data = _fixture("efficienthrnet_h-4_random.pt")
    assert main(["convert", str(FIXTURES / "efficienthrnet_h-4_random.pt"), "--out", str(tmp_path / "h-4.pt")]) == 0
    model = mtl_ehrnet.create_model("pose_h-4", weights=tmp_path / "h-4.pt", input_size=96)
    assert model.config.tf_padding and model.input_size == (96, 96)
    with torch.no_grad():
        assert _relative_error(_reference_order(model(data["input"])), data["outputs"]) <= TOLERANCE
    with pytest.raises(ValueError, match="do not fit the weights"):
        mtl_ehrnet.create_model("pose_h-4", weights=tmp_path / "h-4.pt", num_keypoints=14)
    with pytest.raises(ValueError, match="holds pose_h-4"):
        mtl_ehrnet.create_model("pose_h-3", weights=tmp_path / "h-4.pt")


def test_commands_take_the_converted_file_as_it_is(synth, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """evaluate, predict and train-teacher --init-weights read the converted checkpoint like any of ours."""
    converted = tmp_path / "h-4.pt"
    assert main(["convert", str(FIXTURES / "efficienthrnet_h-4_random.pt"), "--out", str(converted)]) == 0
    coco = [str(synth.coco_annotations("val")), str(synth.coco_images("val"))]
    assert main(["evaluate", str(converted), "--coco", *coco, "--input-size", "64", "--device", "cpu"]) == 0
    assert "| AP |" in capsys.readouterr().out
    image = next(Path(coco[1]).iterdir())
    out = tmp_path / "predicted"
    assert (
        main(["predict", str(converted), str(image), "--out", str(out), "--input-size", "64", "--device", "cpu"]) == 0
    )
    assert (out / "poses.json").is_file()
    run = tmp_path / "finetune"
    assert (
        main(
            [
                "train-teacher",
                "pose",
                "--model",
                "pose_h-4",
                "--init-weights",
                str(converted),
                "--coco",
                str(synth.coco_annotations("train")),
                str(synth.coco_images("train")),
                "--set",
                "data.input_size=64",
                "--epochs",
                "1",
                "--set",
                "run.steps_per_epoch=1",
                "--batch-size",
                "2",
                "--workers",
                "0",
                "--set",
                "run.val_every=0",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert torch.load(run / "last.pt", weights_only=True)["config"]["tf_padding"] is True


def test_a_student_started_from_a_converted_file_computes_what_it_does(tmp_path: Path) -> None:
    """distill --init-weights builds the student with the file's weight options (TF padding), so the joint
    model's pose outputs start equal to the published pose model's."""
    from mtl_ehrnet.checkpoint import load_matching_weights, weight_options

    data = _fixture("efficienthrnet_h-4_random.pt")
    assert main(["convert", str(FIXTURES / "efficienthrnet_h-4_random.pt"), "--out", str(tmp_path / "h-4.pt")]) == 0
    assert weight_options(tmp_path / "h-4.pt") == {"tf_padding": True}
    student = mtl_ehrnet.create_model("mtl_h-4", **weight_options(tmp_path / "h-4.pt"))
    load_matching_weights(student, tmp_path / "h-4.pt")
    with torch.no_grad():
        outputs = student.eval()(data["input"])
    assert (
        _relative_error(_reference_order({k: v for k, v in outputs.items() if k != "seg"}), data["outputs"])
        <= TOLERANCE
    )
