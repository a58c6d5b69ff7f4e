"""Standalone single-task teachers: building, training on ground truth, loading frozen."""
from teachers.flip_average import FlipAveragedTeacher
from teachers.frozen import FrozenTeacher, load_teacher
from teachers.smp_teacher import SmpConfig, SmpSegmentationTeacher
from teachers.train import build_teacher, train

__all__ = [
    "FlipAveragedTeacher",
    "FrozenTeacher",
    "SmpConfig",
    "SmpSegmentationTeacher",
    "build_teacher",
    "load_teacher",
    "train",
]
