"""The student's training loss: ground truth for the task a sample has, the frozen teachers for every
task (soft targets for the task it lacks, weighted ones for the task it has), optional feature hints,
balanced into one named, weighted sum."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence

import torch
from torch import nn

from distill.balancing import DynamicWeightAverage, FixedWeights, UncertaintyWeighting
from distill.hints import FeatureHints
from distill.kd_losses import KDContext, check_kd_loss, kd_loss
from distill.teacher_sources import OnlineTeachers, TeacherSource
from mtl_ehrnet.training.task_loss import GroundTruthLoss

TERM_NAMES = ("pose/heatmaps", "pose/heatmaps_lr", "pose/pull", "pose/push", "seg/ce", "pose/kd_heatmaps",
              "pose/kd_tags", "seg/kd", "trunk/hints")


@dataclass(frozen=True)
class KDSettings:
    """How the student learns from its teachers.

    Attributes:
        labelled_kd_weight: weight of a teacher's term on samples that carry that task's labels (those
            that lack them get weight 1).
        temperature: segmentation KD temperature T.
        seg_kd: ``"kl"`` (pixel-wise KL), ``"cwd"`` (channel-wise distillation), or a registered loss.
        tag_kd: ``"pseudo"`` (AE loss on teacher-grouped confident keypoints), ``"relational"``, ``"none"``,
            or a registered loss.
        heatmap_kd: ``"mse"`` (to the teacher's heatmaps at both resolutions), ``"none"``, or a registered loss
            (KD losses by name: :mod:`distill.kd_losses`).
        hints: feature hints from the shared trunk to the teachers' HRNet branches.
        balancing: ``"fixed"``, ``"uncertainty"`` or ``"dwa"``.
        weights: fixed weights per term name (``"pose/kd_heatmaps"``, ``"seg/kd"``...).
        teacher_flip: teachers answer with the mean of their pass over the image and over its mirror
            (:class:`teachers.flip_average.FlipAveragedTeacher`), cached or online.
    """

    labelled_kd_weight: float = 0.5
    temperature: float = 1.0
    seg_kd: str = "kl"
    tag_kd: str = "pseudo"
    hints: bool = False
    balancing: str = "fixed"
    weights: Dict[str, float] = field(default_factory=dict)
    teacher_flip: bool = False
    heatmap_kd: str = "mse"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.labelled_kd_weight) and self.labelled_kd_weight >= 0):
            raise ValueError(f"labelled_kd_weight must be finite and >= 0, got {self.labelled_kd_weight}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {self.temperature}")
        for task, name in (("pose_heatmaps", self.heatmap_kd), ("pose_tags", self.tag_kd), ("seg", self.seg_kd)):
            check_kd_loss(task, name)
        if self.balancing not in ("fixed", "uncertainty", "dwa"):
            raise ValueError(f"balancing must be one of ('fixed', 'uncertainty', 'dwa'), got {self.balancing!r}")
        for term, weight in self.weights.items():
            if term not in TERM_NAMES:
                raise ValueError(f"weights: no loss term {term!r}; terms: {', '.join(TERM_NAMES)}")
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"weights[{term!r}] must be finite and >= 0, got {weight}")


class DistillationObjective(nn.Module):
    """``(student outputs, batch) -> {term name: weighted term}`` for the shared training engine.

    Args:
        student_channels: channels of the student's shared trunk branches (for hints).
        pose_teacher, seg_teacher: frozen teachers (``teachers.load_teacher``), run online on every batch;
            either may be None.
        settings: see :class:`KDSettings`.
        gt: the ground-truth terms (HigherHRNet's and plain cross-entropy when None).
        task_weights: factor on every term of a task, ground truth and teacher alike (``{"pose": 1,
            "seg": 0.01}``); tasks not named keep 1. The pose terms are ~100x smaller than the
            segmentation ones (heatmap MSE ~0.005 against cross-entropy ~0.5), so unweighted the shared
            trunk follows segmentation alone.
        source: where the teacher maps come from instead of ``pose_teacher`` / ``seg_teacher`` online
            (:mod:`distill.teacher_sources`: a :class:`~distill.teacher_sources.CachedTeachers`, or your own); it
            hands them over in the frame of the batch's samples.
    """

    def __init__(
        self,
        student_channels: Sequence[int],
        pose_teacher: Optional[nn.Module],
        seg_teacher: Optional[nn.Module],
        settings: KDSettings = KDSettings(),
        gt: Optional[GroundTruthLoss] = None,
        task_weights: Optional[Mapping[str, float]] = None,
        source: Optional[TeacherSource] = None,
    ) -> None:
        super().__init__()
        self.task_weights = check_task_weights(task_weights or {})
        self.settings = settings
        self.gt = gt if gt is not None else GroundTruthLoss(("pose", "seg"))
        if source is None:
            source = OnlineTeachers({"pose": pose_teacher, "seg": seg_teacher})
        elif pose_teacher is not None or seg_teacher is not None:
            raise ValueError("give the teachers or a teacher source, not both")
        self.source = source
        self.hints: Optional[FeatureHints] = None
        if settings.hints:
            if not isinstance(source, OnlineTeachers) or not source.tasks:
                raise ValueError("feature hints need the teachers online (OnlineTeachers), not a cache")
            teacher_channels = _trunk_channels(next(iter(source.teachers.values())))
            self.hints = FeatureHints(list(student_channels)[: len(teacher_channels)], teacher_channels)
        names = self.term_names()
        if settings.balancing == "uncertainty":
            self.balancer: nn.Module = UncertaintyWeighting(names)
        elif settings.balancing == "dwa":
            self.balancer = DynamicWeightAverage(names)
        else:
            self.balancer = FixedWeights(settings.weights)
        self.forward_kwargs = {"return_features": True} if self.hints is not None else {}

    def term_names(self) -> list:
        names = ["pose/heatmaps", "pose/heatmaps_lr", "pose/pull", "pose/push", "seg/ce"]
        if "pose" in self.source.tasks:
            names += [term for term, name in (("pose/kd_heatmaps", self.settings.heatmap_kd),
                                              ("pose/kd_tags", self.settings.tag_kd)) if name != "none"]
        if "seg" in self.source.tasks and self.settings.seg_kd != "none":
            names.append("seg/kd")
        if self.hints is not None:
            names.append("trunk/hints")
        return names

    def current_weights(self) -> Dict[str, float]:
        """The balancer's weight per term now (logged beside the terms)."""
        return self.balancer.current(self.term_names())  # type: ignore[operator]

    def prepare(self, batch: Dict[str, torch.Tensor]) -> None:
        """Called by the training loop with the batch before the student's forward pass: lets the teacher source
        start its answer (:meth:`distill.teacher_sources.TeacherSource.prepare`)."""
        if self.source.tasks:
            self.source.prepare(batch, features=self.hints is not None)

    def forward(self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        terms = self.gt(outputs, batch)
        teacher = self.source(batch, features=self.hints is not None) if self.source.tasks else {}
        s = self.settings
        context = KDContext(temperature=s.temperature, push_kind=self.gt.push_kind)
        # (task, its KD loss, its term, the task's labels flag, a factor: tags are weighted as the GT AE terms)
        places = []
        if "pose" in self.source.tasks:
            places += [("pose_heatmaps", s.heatmap_kd, "pose/kd_heatmaps", "has_pose", 1.0),
                       ("pose_tags", s.tag_kd, "pose/kd_tags", "has_pose", self.gt.weights.push)]
        if "seg" in self.source.tasks:
            places.append(("seg", s.seg_kd, "seg/kd", "has_seg", 1.0))
        for task, name, term, labelled, factor in places:
            fn = kd_loss(task, name)
            if fn is not None:
                weight = torch.where(batch[labelled], s.labelled_kd_weight, 1.0)
                terms[term] = factor * (fn(outputs, teacher, context) * weight).mean()
        if self.hints is not None:
            terms["trunk/hints"] = self.hints(list(outputs["trunk"]), teacher["trunk"]).mean()
        if self.task_weights:
            terms = {name: self.task_weights.get(name.split("/", 1)[0], 1.0) * term for name, term in terms.items()}
        return self.balancer(terms)

    def training_state_dict(self) -> Dict[str, torch.Tensor]:
        """What a checkpoint must hold to resume this objective (never the teachers' weights)."""
        state = {f"balancer.{k}": v for k, v in self.balancer.state_dict().items()}
        if self.hints is not None:
            state.update({f"hints.{k}": v for k, v in self.hints.state_dict().items()})
        return state

    def load_training_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.balancer.load_state_dict({k[len("balancer."):]: v for k, v in state.items() if k.startswith("balancer.")})
        if self.hints is not None:
            self.hints.load_state_dict({k[len("hints."):]: v for k, v in state.items() if k.startswith("hints.")})

    def end_epoch(self) -> None:
        if isinstance(self.balancer, DynamicWeightAverage):
            self.balancer.end_epoch()


def task_weight_pair(pair: Sequence[float]) -> Dict[str, float]:
    """``(pose, seg)`` factors as the objective's ``task_weights``, checked as :func:`check_task_weights` does."""
    if len(pair) != 2:
        raise ValueError(f"task_weights must be (pose, seg) factors, got {tuple(pair)}")
    return check_task_weights({"pose": pair[0], "seg": pair[1]})


def check_task_weights(weights: Mapping[str, float]) -> Dict[str, float]:
    """``weights`` as a dict, refusing a task other than pose / seg and a weight that is negative or not finite."""
    for task, value in weights.items():
        if task not in ("pose", "seg"):
            raise ValueError(f"task weights are for 'pose' and 'seg', got {task!r}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"the {task} task weight (--task-weights) must be finite and >= 0, got {value}")
    return {task: float(value) for task, value in weights.items()}


def _trunk_channels(teacher: nn.Module) -> list:
    model = getattr(teacher, "model", teacher)
    body = getattr(model, "body", None)
    if body is None:
        raise ValueError("feature hints need EfficientHRNet teachers (an smp teacher has no HRNet branches)")
    return list(body.out_channels)
