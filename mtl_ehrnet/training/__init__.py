"""The shared training engine and ground-truth losses."""
from mtl_ehrnet.training.backbone_config import BackboneConfig
from mtl_ehrnet.training.engine import FitResult, fit
from mtl_ehrnet.training.nonfinite import NonFiniteLossError
from mtl_ehrnet.training.run_config import RunConfig, pose_recipe, seg_recipe
from mtl_ehrnet.training.task_loss import GroundTruthLoss, GroundTruthWeights

__all__ = [
    "BackboneConfig",
    "FitResult",
    "GroundTruthLoss",
    "GroundTruthWeights",
    "NonFiniteLossError",
    "RunConfig",
    "fit",
    "pose_recipe",
    "seg_recipe",
]
