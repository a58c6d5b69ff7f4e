"""Training a standalone single-task teacher with ground-truth losses on the shared engine."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from torch import nn

from mtl_ehrnet import create_model
from mtl_ehrnet.data import Cityscapes, CocoKeypoints, TrainTransform
from mtl_ehrnet.training import FitResult, RunConfig, fit, pose_recipe, seg_recipe
from mtl_ehrnet.training.seeding import seed_everything
from mtl_ehrnet.training.task_loss import ground_truth_loss
from teachers.smp_teacher import SmpConfig, SmpSegmentationTeacher, parse_smp_name
from teachers.validators import CityscapesValidator, CocoValidator

PathLike = Union[str, Path]
TASKS = ("pose", "seg")


def build_teacher(
    task: str,
    model: str,
    input_size: Optional[int] = None,
    backbone_weights: Optional[PathLike] = None,
    init_weights: Optional[PathLike] = None,
    **overrides: Any,
) -> nn.Module:
    """A single-task model for ``task``: a registered name (``pose_h0``, ``higherhrnet_w32``,
    ``hrnet_w18_small_v2_seg``...) or ``smp:ARCH:ENCODER`` for a segmentation-models-pytorch teacher.

    ``backbone_weights``: a local file initialising the backbone (a ``train-backbone`` checkpoint or a
    torchvision classifier of the same phi; for smp, the encoder's state dict). ``init_weights``: a
    checkpoint of the whole model, ours or a published one (``mtl_ehrnet.convert_checkpoint`` reads it)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if model.startswith("smp:"):
        if task != "seg":
            raise ValueError(f"{model} is a segmentation model; it cannot be a {task} teacher")
        if init_weights is not None:
            raise ValueError(f"init_weights applies to our models, not {model}")
        arch, encoder = parse_smp_name(model)
        size = (input_size, input_size) if input_size else (512, 512)
        return SmpSegmentationTeacher(SmpConfig(arch, encoder, overrides.pop("num_classes", 19), size, model),
                                      encoder_weights=overrides.pop("encoder_weights", backbone_weights))
    if input_size is not None:
        overrides["input_size"] = input_size
    net = create_model(model, weights=init_weights, backbone_weights=backbone_weights, **overrides)
    if net.tasks != (task,):
        raise ValueError(f"{model} has heads {net.tasks}; a {task} teacher needs a single-task {task} model")
    return net


def train(
    task: str,
    model: str,
    out: PathLike,
    *,
    coco: Optional[Tuple[PathLike, PathLike]] = None,
    coco_val: Optional[Tuple[PathLike, PathLike]] = None,
    cityscapes: Optional[PathLike] = None,
    input_size: Optional[int] = None,
    epochs: int = 300,
    resume: bool = False,
    run: Optional[RunConfig] = None,
    ae_weight: float = 1e-3,
    ae_push: str = "exp",
    class_weights: str = "none",
    ohem: Optional[float] = None,
    backbone_weights: Optional[PathLike] = None,
    init_weights: Optional[PathLike] = None,
    augmentation: Optional[Dict[str, Any]] = None,
    **changes: Any,
) -> FitResult:
    """Trains a pose teacher on COCO keypoints or a segmentation teacher on Cityscapes.

    Args:
        task: ``"pose"`` or ``"seg"``.
        model: model name (see :func:`build_teacher`).
        out: run directory (``last.pt``, ``best.pt``, ``log.jsonl``, ``curves.png``).
        coco: (annotation json, image dir) of the pose training set.
        coco_val: (annotation json, image dir) validated on after each epoch (AP).
        cityscapes: Cityscapes root; trains on ``train`` and validates on ``val`` (mIoU).
        input_size: training crop; default the model's native size.
        epochs: epochs (the thesis recipe's LR milestones scale with it).
        resume: continue ``out/last.pt``.
        run: a full run config (overrides the recipe); ``changes`` adjust the recipe otherwise.
        ae_weight: weight of the associative-embedding pull and push terms (HigherHRNet's 1e-3).
        ae_push: the push term, ``"exp"`` (HigherHRNet's) or ``"max"`` (see ``ground_truth_loss``).
        class_weights: segmentation cross-entropy class weights: ``"none"`` or ``"median"``
            (median-frequency balancing over the training labels).
        ohem: segmentation OHEM threshold (HRNet: 0.7), or None for plain cross-entropy.
        backbone_weights: initialises the backbone (e.g. ``train-backbone``'s ``best.pt`` of the same phi);
            a resumed run takes its weights from ``last.pt`` instead.
        init_weights: starts every weight from a checkpoint of ``model``: ours, or a published one
            (EfficientHRNet, HigherHRNet, HRNet-seg; see ``mtl-ehrnet convert``), to fine-tune it.
        augmentation: :class:`TrainTransform` options (``scale_range``, ``max_rotation``, ``max_translate``,
            ``flip_prob``, ``sigma``); unset ones keep HigherHRNet's values.
    """
    if task == "pose" and coco is None:
        raise ValueError("a pose teacher needs --coco ANN_FILE IMAGE_DIR")
    if task == "seg" and cityscapes is None:
        raise ValueError("a segmentation teacher needs --cityscapes ROOT")
    # Built first, so that a bad class_weights value is refused before any model or data is built.
    loss = ground_truth_loss(
        (task,), ae_weight=ae_weight, ae_push=ae_push, class_weights=class_weights, ohem=ohem, cityscapes=cityscapes
    )
    if run is not None and changes:
        raise ValueError(f"give the run's settings either as run= or as RunConfig changes, not both: {sorted(changes)}")
    config = run or (pose_recipe if task == "pose" else seg_recipe)(epochs, **changes)
    seed_everything(config.seed)  # the same seed gives the same initial weights (and resumable runs)
    net = build_teacher(
        task,
        model,
        input_size,
        backbone_weights=None if resume else backbone_weights,
        init_weights=None if resume else init_weights,
    )
    size = net.input_size
    augment = TrainTransform(size, **(augmentation or {}))
    if task == "pose":
        train_set = CocoKeypoints(coco[1], coco[0], augment, skip_empty=True)
        validate = CocoValidator(coco_val[0], coco_val[1]) if coco_val else None
    else:
        train_set = Cityscapes(cityscapes, "train", augment)
        validate = CityscapesValidator(cityscapes, "val")
    config.extra.update(task=task, model=model, input_size=list(size))
    config.extra.update(
        ae_weight=ae_weight,
        ae_push=ae_push,
        class_weights=class_weights,
        ohem=ohem,
        augmentation=augment.settings(),
        backbone_weights=str(backbone_weights) if backbone_weights else None,
        init_weights=str(init_weights) if init_weights else None,
    )
    result = fit(net, loss, train_set, config, out, validate=validate, resume=resume)
    _plot(Path(out))
    return result


def _plot(out: Path) -> None:
    from evaluation.plots import plot_training_log

    if (out / "log.jsonl").is_file():
        plot_training_log(out / "log.jsonl", out / "curves.png")
