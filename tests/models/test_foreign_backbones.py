"""timm and torchvision networks as backbones: output contract, gradients, ONNX parity, errors,
checkpoints and local weights."""
import io
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from torch import nn

from mtl_ehrnet import create_model, load_backbone_weights
from mtl_ehrnet.checkpoint import load_model, save_checkpoint
from mtl_ehrnet.models.config import ModelConfig

# Three timm families (MobileNetV3, RegNet, ConvNeXt) and one torchvision network, all small on CPU.
TIMM = ["timm:mobilenetv3_small_100", "timm:regnetx_002", "timm:convnext_atto"]
TORCHVISION = ["torchvision:mobilenet_v3_small"]
SIZE = 64


def _expected(model: nn.Module, batch: int) -> dict:
    k, c = model.config.num_keypoints, model.config.num_classes
    return {
        "heatmaps": (batch, k, SIZE // 2, SIZE // 2),
        "heatmaps_lr": (batch, k, SIZE // 4, SIZE // 4),
        "tags": (batch, k, SIZE // 4, SIZE // 4),
        "seg": (batch, c, SIZE // 4, SIZE // 4),
    }


def _wake_zero_initialised_norms(model: nn.Module) -> None:
    # timm zero-initialises the last BN of every residual branch (RegNet's zero_init_last), so at
    # initialisation the gradient of everything before it in the branch is exactly zero by design; set
    # those scales to 1 so a zero gradient below can only mean a disconnected parameter.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and module.weight is not None and not module.weight.any():
            nn.init.ones_(module.weight)


@pytest.mark.parametrize("backbone", TIMM + TORCHVISION)
def test_contract_gradients_and_onnx_parity(backbone: str) -> None:
    model = create_model("mtl_h-4", backbone=backbone, num_classes=5)
    taps = model.backbone(torch.zeros(1, 3, SIZE, SIZE))
    assert [tuple(t.shape[1:]) for t in taps] == [
        (c, SIZE // s, SIZE // s) for c, s in zip(model.backbone.out_channels, (4, 8, 16, 32))
    ]

    _wake_zero_initialised_norms(model)
    outputs = model.train()(torch.randn(2, 3, SIZE, SIZE))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == _expected(model, 2)
    sum(v.square().mean() for v in outputs.values()).backward()
    dead = [
        n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()
    ]
    assert not dead, f"parameters without a useful gradient: {dead[:5]} ({len(dead)})"

    ort = pytest.importorskip("onnxruntime")
    model.eval()
    images = torch.randn(1, 3, SIZE, SIZE)
    buffer = io.BytesIO()
    torch.onnx.export(model, (images,), buffer, dynamo=False, input_names=["images"], output_names=list(outputs))
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    results = dict(zip(list(outputs), session.run(None, {"images": images.numpy()})))
    with torch.no_grad():
        reference = model(images)
    for name, value in reference.items():
        torch.testing.assert_close(torch.from_numpy(results[name]), value, atol=1e-4, rtol=0)


def test_single_task_models_take_a_foreign_backbone() -> None:
    pose = create_model("pose_h-4", backbone=TIMM[0])
    seg = create_model("seg_h-4", backbone=TORCHVISION[0])
    assert set(pose(torch.zeros(1, 3, SIZE, SIZE))) == {"heatmaps", "heatmaps_lr", "tags"}
    assert set(seg(torch.zeros(1, 3, SIZE, SIZE))) == {"seg"}
    assert pose.backbone.out_channels == tuple(
        timm.create_model("mobilenetv3_small_100", features_only=True, out_indices=(1, 2, 3, 4)).feature_info.channels()
    )


def test_torchvision_taps_are_the_last_module_of_each_stride() -> None:
    model = create_model("pose_h-4", backbone="torchvision:resnet18")
    assert [lv.name for lv in model.backbone.levels] == ["layer1", "layer2", "layer3", "layer4"]
    assert model.backbone.out_channels == (64, 128, 256, 512)


def test_backbone_without_strides_4_to_32_lists_what_it_offers() -> None:
    with pytest.raises(
        ValueError, match=r"(?s)'timm:vit_tiny_patch16_224'.*stride\(s\) \[4, 8, 32\].*blocks.11: stride 16, 192 ch"
    ):
        create_model("mtl_h-4", backbone="timm:vit_tiny_patch16_224")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone": "keras:resnet50"}, "got 'keras:resnet50'"),
        ({"backbone": "timm:"}, "got 'timm:'"),
        ({"backbone": "timm:no_such_net"}, "unknown timm model 'no_such_net'"),
        ({"backbone": "torchvision:no_such_net"}, "unknown torchvision model 'no_such_net'"),
        ({"backbone": "timm:resnet18", "lite": True}, "lite=True needs an EfficientNet backbone"),
    ],
)
def test_bad_backbone_specs_are_explained(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("mtl_h-4", **overrides)


def test_baselines_keep_their_hrnet_stem() -> None:
    with pytest.raises(ValueError, match="only applies to pose_h/seg_h/mtl_h"):
        create_model("higherhrnet_w32", backbone="timm:resnet18")


def test_checkpoint_round_trip_rebuilds_the_timm_backbone(tmp_path: Path) -> None:
    model = create_model("mtl_h-4", backbone=TIMM[2], share="s2").eval()
    path = save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_model(path)
    assert loaded.config == model.config and loaded.config.backbone == TIMM[2]
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config
    images = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        for name, value in model(images).items():
            torch.testing.assert_close(loaded(images)[name], value)


@pytest.mark.parametrize("name", ["mobilenetv3_small_100", "convnext_atto"])  # convnext: stages.0 -> stages_0
def test_timm_classifier_state_dict_loads(tmp_path: Path, name: str) -> None:
    classifier = timm.create_model(name, pretrained=False)
    path = tmp_path / "classifier.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in classifier.state_dict().items()}}, path)
    model = create_model("pose_h-4", backbone=f"timm:{name}")
    report = load_backbone_weights(model.backbone, path)
    assert report.missing == []
    assert any("classifier" in k or "head" in k for k in report.unexpected)
    own = model.backbone.state_dict()
    source = classifier.state_dict()
    for key in report.loaded:
        bare = key.removeprefix("model.")
        original = bare if bare in source else next(k for k in source if k.replace("_", ".") == bare.replace("_", "."))
        torch.testing.assert_close(own[key], source[original])


def test_torchvision_weights_and_our_checkpoint_load(tmp_path: Path) -> None:
    classifier = torchvision.models.mobilenet_v3_small(weights=None)
    path = tmp_path / "tv.pth"
    torch.save(classifier.state_dict(), path)
    model = create_model("mtl_h-4", backbone=TORCHVISION[0], backbone_weights=path)
    report = load_backbone_weights(model.backbone, path)
    assert not report.missing and report.unexpected and all(k.startswith("classifier.") for k in report.unexpected)
    torch.testing.assert_close(
        model.backbone.state_dict()["model.features.0.0.weight"], classifier.features[0][0].weight
    )

    saved = save_checkpoint(tmp_path / "pose.pt", model)
    other = create_model("seg_h-4", backbone=TORCHVISION[0])
    report = load_backbone_weights(other.backbone, saved)
    assert not report.missing and all(k.startswith(("body.", "heads.")) for k in report.unexpected)
    torch.testing.assert_close(other.backbone.state_dict(), model.backbone.state_dict())


def test_weights_of_another_network_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match="no key of the weights matches"):
        create_model("pose_h-4", backbone=TIMM[2], backbone_weights=path)
