"""mtl_ehrnet: EfficientHRNet pose estimation + segmentation in one network, distilled from teachers."""
from mtl_ehrnet.models import (
    EfficientHRNet,
    ModelConfig,
    create_model,
    list_classifiers,
    list_models,
    load_backbone_weights,
    model_config,
    pad_to_multiple,
)
from mtl_ehrnet.inference import Predictor

__version__ = "0.1.0"

__all__ = [
    "EfficientHRNet",
    "ModelConfig",
    "Predictor",
    "create_model",
    "list_classifiers",
    "list_models",
    "load_backbone_weights",
    "model_config",
    "pad_to_multiple",
]
