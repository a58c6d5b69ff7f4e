"""Distillation: one multi-task student learns pose and segmentation from standalone teachers."""
from distill.balancing import DynamicWeightAverage, FixedWeights, UncertaintyWeighting
from distill.hints import FeatureHints
from distill.pose_kd import heatmap_kd, pseudo_joints, tag_kd_pseudo, tag_kd_relational
from distill.seg_kd import channel_wise, pixel_kl

__all__ = [
    "DynamicWeightAverage", "FeatureHints", "FixedWeights", "UncertaintyWeighting", "channel_wise", "heatmap_kd",
    "pixel_kl", "pseudo_joints", "tag_kd_pseudo", "tag_kd_relational",
]
