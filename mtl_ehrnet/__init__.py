"""mtl_ehrnet: EfficientHRNet pose estimation + segmentation in one network, distilled from teachers."""
from mtl_ehrnet.convert import ConversionReport, convert_checkpoint
from mtl_ehrnet.factory import create_model, load_model
from mtl_ehrnet.inference import Predictor
from mtl_ehrnet.models import (
    EfficientHRNet,
    ModelConfig,
    build_model,
    list_classifiers,
    list_models,
    load_backbone_weights,
    model_config,
    pad_to_multiple,
)

__version__ = "0.1.0"

__all__ = [
    "ConversionReport",
    "EfficientHRNet",
    "ModelConfig",
    "Predictor",
    "build_model",
    "convert_checkpoint",
    "create_model",
    "list_classifiers",
    "list_models",
    "load_backbone_weights",
    "load_model",
    "model_config",
    "pad_to_multiple",
]
