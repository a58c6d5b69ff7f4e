"""Perfect maps run through the predictor, grouping and COCOeval score high AP, more so at higher input."""
import pytest

from mtl_ehrnet.data import generate_synthetic
from mtl_ehrnet.data.scene import SceneOptions
from oracle import main, oracle_ap


@pytest.fixture(scope="module")
def people_set(tmp_path_factory: pytest.TempPathFactory):
    # Several people per image, none tiny: what perfect maps lose here, the inference chain lost.
    options = SceneOptions(people=(2, 4), min_person_height=0.3, crowds=False, empty_fraction=0.0)
    return generate_synthetic(
        tmp_path_factory.mktemp("people"), images=30, seed=1, size=(128, 96), scene_options=options
    )


def test_perfect_maps_score_high_ap_and_resolution_helps(people_set, capsys: pytest.CaptureFixture) -> None:
    ann, images = people_set.coco_annotations("val"), people_set.coco_images("val")
    low, high = oracle_ap(ann, images, 32)["AP"], oracle_ap(ann, images, 256)["AP"]
    assert high > 0.9, "the inference chain loses people that perfect maps contain"
    assert high > low + 0.3, "at 32 px joints merge on the maps"
    assert main(["--coco", str(ann), str(images), "--input-size", "128"]) == 0
    assert "input 128:" in capsys.readouterr().out
