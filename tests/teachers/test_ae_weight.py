"""train-teacher's --ae-weight scales the associative-embedding terms and nothing else."""
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from mtl_ehrnet.checkpoint import read_checkpoint
from mtl_ehrnet.data import SyntheticLayout
from mtl_ehrnet.training.metric_log import read_log
from teachers import train


def _one_step(synth: SyntheticLayout, out: Path, **options: Any) -> Tuple[Dict[str, float], Dict[str, Any]]:
    """One training step of pose_h-4 with ``options``: its logged terms and the run config's ``extra``."""
    coco = (synth.coco_annotations("train"), synth.coco_images("train"))
    train("pose", "pose_h-4", out, coco=coco, input_size=64, epochs=1, batch_size=2, workers=0, steps_per_epoch=1,
          **options)
    return read_log(out / "log.jsonl", "train")[0], read_checkpoint(out / "last.pt")["run_config"]["extra"]


def test_ae_weight_scales_pull_and_push_only(synth: SyntheticLayout, tmp_path: Path) -> None:
    logs = {}
    for weight in (1e-3, 1.0):
        logs[weight], extra = _one_step(synth, tmp_path / str(weight), ae_weight=weight)
        assert extra["ae_weight"] == weight and extra["ae_push"] == "exp"
    small, large = logs[1e-3], logs[1.0]
    assert large["pose/push"] == pytest.approx(1000 * small["pose/push"], rel=1e-4)
    assert large["pose/heatmaps"] == pytest.approx(small["pose/heatmaps"], rel=1e-6)  # same seed, same first step


def test_augmentation_options_reach_the_transform_and_are_recorded(synth: SyntheticLayout, tmp_path: Path) -> None:
    logs = {}
    for name, options in (
        ("plain", {}),
        ("still", {"max_rotation": 0.0, "scale_range": (1.0, 1.0), "max_translate": 0.0}),
    ):
        logs[name], extra = _one_step(synth, tmp_path / name, augmentation=options)
        recorded = {
            "scale_range": [0.75, 1.5],
            "max_rotation": 30.0,
            "max_translate": 0.2,
            "flip_prob": 0.5,
            "sigma": 2.0,
        }
        recorded.update({k: list(v) if isinstance(v, tuple) else v for k, v in options.items()})
        assert extra["augmentation"] == recorded
    # Same seed and weights, different crops: the first step's heatmap loss differs.
    assert logs["still"]["pose/heatmaps"] != pytest.approx(logs["plain"]["pose/heatmaps"], rel=1e-3)
