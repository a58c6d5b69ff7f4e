"""Data: COCO keypoints and Cityscapes in their real formats, HigherHRNet targets and augmentation,
task-mixed batches, and the synthetic street-scene generator (``generate_synthetic``, behind
``mtl-ehrnet synth``). The training-sample contract is documented in :mod:`mtl_ehrnet.data.sample`."""
from mtl_ehrnet.data.cityscapes import CLASS_NAMES, NUM_CLASSES, Cityscapes, list_cityscapes_pairs, to_train_ids
from mtl_ehrnet.data.coco import CocoKeypoints
from mtl_ehrnet.data.joint import JointDataset
from mtl_ehrnet.data.mixed import MixedTaskDataset, TaskMixBatchSampler, collate_samples
from mtl_ehrnet.data.raw_dataset import RawDataset
from mtl_ehrnet.data.sample import IGNORE_INDEX, SAMPLE_KEYS, RawSample
from mtl_ehrnet.data.skeleton import COCO_FLIP_INDEX, COCO_KEYPOINT_NAMES, COCO_SKELETON, NUM_KEYPOINTS
from mtl_ehrnet.data.synthetic import SyntheticLayout, generate_synthetic
from mtl_ehrnet.data.transforms import TestTransform, TrainTransform

__all__ = [
    "CLASS_NAMES", "COCO_FLIP_INDEX", "COCO_KEYPOINT_NAMES", "COCO_SKELETON", "Cityscapes", "CocoKeypoints",
    "IGNORE_INDEX", "JointDataset", "MixedTaskDataset", "NUM_CLASSES", "NUM_KEYPOINTS", "RawDataset", "RawSample",
    "SAMPLE_KEYS", "SyntheticLayout", "TaskMixBatchSampler", "TestTransform", "TrainTransform",
    "collate_samples", "generate_synthetic", "list_cityscapes_pairs", "to_train_ids",
]
