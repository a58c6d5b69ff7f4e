"""The EfficientHRNet model family."""
from mtl_ehrnet.models.backbone import EfficientNetBackbone
from mtl_ehrnet.models.classifier import ClassifierConfig, EfficientNetClassifier, load_classifier
from mtl_ehrnet.models.classifier_presets import classifier_config, list_classifiers
from mtl_ehrnet.models.config import SHARE_POINTS, ModelConfig
from mtl_ehrnet.models.efficienthrnet import EfficientHRNet, TrunkFeatures
from mtl_ehrnet.models.hrnet import BodyConfig, HRNetBody
from mtl_ehrnet.models.hrnet_stem import HRNetStemBackbone
from mtl_ehrnet.models.pose_head import PoseHead
from mtl_ehrnet.models.registry import build_model, list_models, model_config
from mtl_ehrnet.models.seg_head import SegHead
from mtl_ehrnet.models.size_check import nearest_valid_size, pad_to_multiple
from mtl_ehrnet.models.weights import LoadReport, load_backbone_weights

__all__ = [
    "BodyConfig",
    "ClassifierConfig",
    "EfficientHRNet",
    "EfficientNetBackbone",
    "EfficientNetClassifier",
    "HRNetBody",
    "HRNetStemBackbone",
    "LoadReport",
    "ModelConfig",
    "PoseHead",
    "SHARE_POINTS",
    "SegHead",
    "TrunkFeatures",
    "classifier_config",
    "build_model",
    "list_classifiers",
    "list_models",
    "load_backbone_weights",
    "load_classifier",
    "model_config",
    "nearest_valid_size",
    "pad_to_multiple",
]
