"""Training curves: COCOeval's -1 (no objects in an area range) is a gap, not a point at -1."""
import json
from pathlib import Path

from evaluation.plots import metric_series, plot_training_log


def test_undefined_coco_metrics_are_gaps_and_never_defined_ones_are_dropped(tmp_path: Path) -> None:
    records = [{"kind": "epoch", "epoch": e, "step": 10 * e, "loss": 1.0 / e, "pose/heatmaps": 0.1 / e} for e in (1, 2)]
    vals = [{"kind": "val", "epoch": 1, "step": 10, "AP": 0.1, "APL": -1.0, "APM": -1.0},
            {"kind": "val", "epoch": 2, "step": 20, "AP": 0.3, "APL": -1.0, "APM": 0.2}]
    assert metric_series(vals) == {"AP": [0.1, 0.3], "APM": [None, 0.2]}
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records + vals))
    png = plot_training_log(log, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
