"""The quick start runs every step end to end (tiny sizes) and writes the comparison with all six rows."""
import json
from pathlib import Path

from distill.compare import ROW_NAMES
from distill.quickstart import QuickstartPlan, run_quickstart


def test_quickstart_end_to_end_tiny(tmp_path: Path) -> None:
    plan = QuickstartPlan(images=10, image_size=(96, 64), input_size=64, pose_teacher="pose_h-4", seg_teacher="seg_h-4",
                          teacher_epochs=1, student_epochs=1, batch_size=2, workers=0)
    paths = run_quickstart(tmp_path / "qs", plan)
    rows = json.loads(paths["json"].read_text())
    assert [r["name"] for r in rows] == list(ROW_NAMES)
    assert all({"ap", "miou", "params", "macs", "latency_ms"} <= set(r) for r in rows)
    assert paths["plot"].is_file() and paths["markdown"].is_file()
    # A second run reuses every result instead of training again.
    student = tmp_path / "qs" / "runs" / "joint_student_kd" / "student.pt"
    data = tmp_path / "qs" / "data" / "coco" / "annotations" / "person_keypoints_val.json"
    stamps = student.stat().st_mtime_ns, data.stat().st_mtime_ns
    run_quickstart(tmp_path / "qs", plan)
    assert (student.stat().st_mtime_ns, data.stat().st_mtime_ns) == stamps
