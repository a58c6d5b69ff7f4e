"""The whole story on the built-in synthetic data: generate it, train both teachers, the three
ground-truth-only students and the distilled joint student, then compare them in one table."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Union

from distill.compare import compare_rows, markdown, savings, write_comparison
from distill.objective import KDSettings
from distill.student import train_student
from mtl_ehrnet.data import SyntheticLayout, generate_synthetic
from teachers.train import train as train_teacher

PathLike = Union[str, Path]


@dataclass(frozen=True)
class QuickstartPlan:
    """Sizes of the quick-start run (defaults fit 2 CPU cores)."""

    images: int = 400
    image_size: tuple = (160, 120)
    input_size: int = 128
    pose_teacher: str = "pose_h-2"
    seg_teacher: str = "seg_h-2"
    student: str = "mtl_h-4"
    teacher_epochs: int = 30
    student_epochs: int = 30
    batch_size: int = 8
    workers: int = 1
    seed: int = 0


def run_quickstart(out: PathLike, plan: QuickstartPlan = QuickstartPlan()) -> Dict[str, Path]:
    """Runs every step into ``out`` (each step resumes or is skipped when its result exists)."""
    out = Path(out)
    data = out / "data"
    stamp = data / "generated.json"
    wanted = json.dumps({"images": plan.images, "seed": plan.seed, "size": list(plan.image_size)})
    if stamp.is_file() and stamp.read_text() == wanted:
        layout = SyntheticLayout(data)
    else:  # written only after a complete generation, so an interrupted one is redone
        layout = generate_synthetic(data, images=plan.images, seed=plan.seed, size=plan.image_size, progress=True)
        stamp.write_text(wanted)
    coco = (layout.coco_annotations("train"), layout.coco_images("train"))
    coco_val = (layout.coco_annotations("val"), layout.coco_images("val"))
    common = dict(input_size=plan.input_size, batch_size=plan.batch_size, workers=plan.workers, seed=plan.seed)
    runs = out / "runs"
    checkpoints: Dict[str, Path] = {}

    def once(name: str, train, result_file: str) -> Path:  # noqa: ANN001
        path = runs / name / result_file
        if not path.is_file():
            resume = (runs / name / "last.pt").is_file()
            train(runs / name, resume)
        checkpoints[name] = path
        return path

    once("pose_teacher", lambda d, r: train_teacher("pose", plan.pose_teacher, d, coco=coco, coco_val=coco_val, epochs=plan.teacher_epochs, resume=r, **common), "best.pt")
    once("seg_teacher", lambda d, r: train_teacher("seg", plan.seg_teacher, d, cityscapes=layout.cityscapes_root, epochs=plan.teacher_epochs, resume=r, **common), "best.pt")
    student_name = plan.student.split("_", 1)[1]
    once("pose_student_gt", lambda d, r: train_teacher("pose", f"pose_{student_name}", d, coco=coco, coco_val=coco_val, epochs=plan.student_epochs, resume=r, **common), "best.pt")
    once("seg_student_gt", lambda d, r: train_teacher("seg", f"seg_{student_name}", d, cityscapes=layout.cityscapes_root, epochs=plan.student_epochs, resume=r, **common), "best.pt")
    joint = dict(coco=coco, cityscapes=layout.cityscapes_root, joint_val=layout.joint_root, epochs=plan.student_epochs, **common)
    once("joint_student_gt", lambda d, r: train_student(plan.student, d, resume=r, **joint), "student.pt")
    once("joint_student_kd", lambda d, r: train_student(
        plan.student, d, pose_teacher=checkpoints["pose_teacher"], seg_teacher=checkpoints["seg_teacher"], cache=out / "cache",
        settings=KDSettings(), resume=r, **joint), "student.pt")
    rows = compare_rows(checkpoints, layout.joint_root)
    paths = write_comparison(rows, out / "compare")
    print(markdown(rows, savings(rows)))
    return paths
