"""Inference: grouping joint detections into people, the image-level predictor, deployment paths, drawing."""
from mtl_ehrnet.inference.deployment import DeploymentPath, choose_path
from mtl_ehrnet.inference.grouping import group_poses
from mtl_ehrnet.inference.predictor import Prediction, Predictor

__all__ = ["DeploymentPath", "Prediction", "Predictor", "choose_path", "group_poses"]
