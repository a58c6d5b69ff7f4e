"""Distillation: one multi-task student learns pose and segmentation from standalone teachers."""
from distill.answer_store import TeacherAnswers
from distill.balancing import DynamicWeightAverage, FixedWeights, UncertaintyWeighting
from distill.hints import FeatureHints
from distill.kd_losses import KDContext, kd_loss_names, register_kd_loss
from distill.objective import DistillationObjective, KDSettings
from distill.pose_kd import heatmap_kd, pseudo_joints, tag_kd_pseudo, tag_kd_relational
from distill.record_answers import record_teacher_answers
from distill.seg_kd import channel_wise, pixel_kl
from distill.student import train_student
from distill.teacher_sources import CachedTeachers, OnlineTeachers, RecordedTeachers, TeacherSource

__all__ = [
    "CachedTeachers",
    "DistillationObjective",
    "DynamicWeightAverage",
    "FeatureHints",
    "FixedWeights",
    "KDContext",
    "KDSettings",
    "OnlineTeachers",
    "RecordedTeachers",
    "TeacherAnswers",
    "TeacherSource",
    "UncertaintyWeighting",
    "channel_wise",
    "heatmap_kd",
    "kd_loss_names",
    "pixel_kl",
    "pseudo_joints",
    "record_teacher_answers",
    "register_kd_loss",
    "tag_kd_pseudo",
    "tag_kd_relational",
    "train_student",
]
