"""Evaluation: complexity counts, metrics, latency, export and report tables."""
from evaluation.coco_eval import coco_keypoint_ap
from evaluation.complexity import complexity, count_parameters
from evaluation.dataset_eval import evaluate_cityscapes, evaluate_coco, evaluate_joint
from evaluation.latency import measure_latency
from evaluation.seg_metrics import mean_iou
from mtl_ehrnet.inference.onnx_export import export_onnx

__all__ = [
    "coco_keypoint_ap", "complexity", "count_parameters", "evaluate_cityscapes", "evaluate_coco", "evaluate_joint",
    "export_onnx", "mean_iou", "measure_latency",
]
