"""Inference: grouping joint detections into people, the image-level predictor, drawing."""
from mtl_ehrnet.inference.grouping import group_poses
from mtl_ehrnet.inference.predictor import Prediction, Predictor

__all__ = ["Prediction", "Predictor", "group_poses"]
