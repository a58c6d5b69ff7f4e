"""Pretraining a compact EfficientNet classifier (thesis 4.1) whose trunk initialises EfficientHRNet.

``train_backbone`` trains ``efficientnet_b<phi>`` on an ImageFolder or CIFAR-100 folder with the
thesis's recipe on the shared engine (``fit``), validating top-1/top-5 after each epoch. Its ``best.pt``
/ ``last.pt`` load as the backbone of ``pose_h<phi>``, ``seg_h<phi>`` and ``mtl_h<phi>``:
``create_model("pose_h-2", backbone_weights="runs/b-2/best.pt")``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Tuple, Union

from mtl_ehrnet.data.classification_sets import open_classification_data
from mtl_ehrnet.data.classification_transforms import ClassificationTestTransform, ClassificationTrainTransform
from mtl_ehrnet.models.classifier import EfficientNetClassifier
from mtl_ehrnet.models.classifier_presets import classifier_config
from mtl_ehrnet.training.classify import ClassificationLoss, evaluate_classifier
from mtl_ehrnet.training.engine import FitResult, fit
from mtl_ehrnet.training.run_config import RunConfig, classifier_recipe
from mtl_ehrnet.training.seeding import seed_everything

PathLike = Union[str, Path]


def train_backbone(
    data: PathLike,
    phi: int,
    out: PathLike,
    *,
    epochs: int = 200,
    input_size: Optional[int] = None,
    lite: bool = False,
    crop_scale: Tuple[float, float] = (0.08, 1.0),
    resume: bool = False,
    run: Optional[RunConfig] = None,
    **changes: Any,
) -> FitResult:
    """Trains ``efficientnet_b<phi>`` on ``data``.

    Args:
        data: an ImageFolder root (``train/<class>/...``, optional ``val/`` or ``test/``) or a CIFAR-100
            python-layout folder (see :mod:`mtl_ehrnet.data.classification_sets`).
        phi: scaling coefficient; the checkpoint initialises the ``*_h<phi>`` models.
        out: run directory (``last.pt``, ``best.pt`` by validation top-1, ``log.jsonl``).
        epochs: epochs (the recipe's step milestones follow from it).
        input_size: training/evaluation side; default the Table 4.1 size of phi.
        lite: EfficientNet-lite trunk (for ``lite=True`` pose/seg models).
        crop_scale: area range of the random-resized crop.
        resume: continue ``out/last.pt``.
        run: a full run config (overrides the recipe); ``changes`` adjust the recipe otherwise.
    """
    if run is not None and changes:
        raise ValueError(f"give the run's settings either as run= or as RunConfig changes, not both: {sorted(changes)}")
    config = replace(run, extra=dict(run.extra)) if run is not None else classifier_recipe(epochs, **changes)
    seed_everything(config.seed)  # the same seed gives the same initial weights
    name = f"efficientnet_b{phi}"
    size = input_size or classifier_config(name).input_size[0]
    sets = open_classification_data(
        data, ClassificationTrainTransform(size, scale=crop_scale), ClassificationTestTransform(size)
    )
    model = EfficientNetClassifier(classifier_config(name, num_classes=len(sets.classes), lite=lite, input_size=size))
    validate = None
    if sets.val is not None:
        def validate(m: EfficientNetClassifier) -> dict:  # noqa: E306
            return evaluate_classifier(m, sets.val, batch_size=config.batch_size, workers=config.workers)
    else:
        config.val_every, config.monitor = 0, ""
    config.extra.update(model=name, data=str(data), layout=sets.layout, classes=list(sets.classes),
                        input_size=size, crop_scale=list(crop_scale))
    return fit(model, ClassificationLoss(), sets.train, config, out, validate=validate, resume=resume)
