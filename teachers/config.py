"""The teacher-training job's configuration: one frozen tree, read from YAML and written to ``OUT/config.yaml``.

``mtl-ehrnet train-teacher`` keeps the everyday settings as flags and reaches the rest with
``--set section.key=value`` (``docs/training.md`` lists them all).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Optional, Tuple

from mtl_ehrnet.training import RunConfig
from mtl_ehrnet.training.job_config import Augmentation, GroundTruthTerms, recipe_run, resolved_run
from mtl_ehrnet.training.run_config import pose_recipe, seg_recipe

TASKS = ("pose", "seg")


@dataclass(frozen=True)
class TeacherData:
    """The training sets: ``coco`` and ``coco_val`` are (annotation file, image directory) for pose;
    ``cityscapes`` the root for segmentation (trains on train, validates on val)."""

    coco: Optional[Tuple[str, str]] = None
    coco_val: Optional[Tuple[str, str]] = None
    cityscapes: Optional[str] = None
    input_size: Optional[int] = None
    augmentation: Augmentation = field(default_factory=Augmentation)


@dataclass(frozen=True)
class TeacherInit:
    """``weights``: every weight from a checkpoint of the model (ours or a published one), to fine-tune it;
    ``backbone_weights``: the backbone alone (a train-backbone checkpoint, a torchvision classifier...)."""

    weights: Optional[str] = None
    backbone_weights: Optional[str] = None


@dataclass(frozen=True)
class TeacherConfig:
    """One teacher run: its task and model, data, ground-truth loss, start, and the training run (``run``:
    :class:`~mtl_ehrnet.training.RunConfig` fields over the task's recipe)."""

    task: Optional[str] = None
    model: Optional[str] = None
    data: TeacherData = field(default_factory=TeacherData)
    loss: GroundTruthTerms = field(default_factory=GroundTruthTerms)
    init: TeacherInit = field(default_factory=TeacherInit)
    run: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        self.run_config()

    def check_complete(self) -> None:
        """Refuses a config without a task, a model, or the task's training set."""
        if self.task is None or self.model is None:
            raise ValueError("the config sets no task or model (train-teacher pose|seg --model NAME)")
        if self.task == "pose" and self.data.coco is None:
            raise ValueError("train-teacher pose needs --coco ANN_FILE IMAGE_DIR")
        if self.task == "seg" and self.data.cityscapes is None:
            raise ValueError("train-teacher seg needs --cityscapes ROOT")

    def run_config(self) -> RunConfig:
        """The task's recipe for ``run["epochs"]`` (300 when unset) with ``run``'s fields over it."""
        return recipe_run(seg_recipe if self.task == "seg" else pose_recipe, self.run)

    def resolved(self) -> "TeacherConfig":
        """This config with ``run`` holding every resolved RunConfig field."""
        return replace(self, run=resolved_run(self.run_config()))
