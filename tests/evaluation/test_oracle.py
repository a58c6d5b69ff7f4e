"""Perfect maps run through the predictor, grouping and COCOeval score high AP, more so at higher input."""
import pytest

from evaluation.oracle import main, oracle_ap
from mtl_ehrnet.data import SyntheticLayout


def test_perfect_maps_score_high_ap_and_resolution_helps(synth: SyntheticLayout, capsys: pytest.CaptureFixture) -> None:
    ann, images = synth.coco_annotations("val"), synth.coco_images("val")
    low, high = oracle_ap(ann, images, 64)["AP"], oracle_ap(ann, images, 256)["AP"]
    assert high > 0.85, "the inference chain loses people that perfect maps contain"
    assert high > low + 0.3, "at 64 px small people vanish from the maps"
    assert main(["--coco", str(ann), str(images), "--input-size", "128"]) == 0
    assert "input 128:" in capsys.readouterr().out
