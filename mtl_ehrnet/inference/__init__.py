"""Inference: grouping joint detections into people, the image-level predictor, drawing."""
from mtl_ehrnet.inference.grouping import group_poses

__all__ = ["group_poses"]
