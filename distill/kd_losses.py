"""Knowledge-distillation losses by name: the built-ins, and any that a researcher registers.

Three places of the objective take a KD loss, each chosen by name in :class:`~distill.objective.KDSettings`:

=================  ===============================  ==================  ===========================================
task               KDSettings field (default)       term                built-ins
=================  ===============================  ==================  ===========================================
``pose_heatmaps``  ``heatmap_kd`` (``"mse"``)       ``pose/kd_heatmaps`` ``mse``
``pose_tags``      ``tag_kd`` (``"pseudo"``)        ``pose/kd_tags``     ``pseudo``, ``relational``
``seg``            ``seg_kd`` (``"kl"``)            ``seg/kd``           ``kl``, ``cwd``
=================  ===============================  ==================  ===========================================

A loss is ``fn(student, teacher, context) -> (B,)``: one value per image, which the objective weights (the
labelled-KD weight on samples that carry the task's labels; the ground truth's push weight for tags) and
averages. ``student`` holds the student's outputs (``"heatmaps"``, ``"heatmaps_lr"``, ``"tags"``, ``"seg"``);
``teacher`` the teacher's maps in the sample's frame, online or replayed from the cache (``"valid_lr"``: 1 inside
the image, 0 on padding). The name ``"none"`` leaves a task's term out.

Register from your own code with :func:`register_kd_loss`, or from an installed package under the entry-point
group ``mtl_ehrnet.kd_losses`` with the name ``TASK.NAME`` (``seg.l1 = mypkg.losses:l1``), so that the command
line and YAML configs can name it too.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Dict, Optional, Tuple

import torch

from distill.pose_kd import heatmap_kd, tag_kd_pseudo, tag_kd_relational
from distill.seg_kd import channel_wise, pixel_kl
from mtl_ehrnet.training.pose_loss import associative_embedding

KD_TASKS = ("pose_heatmaps", "pose_tags", "seg")
ENTRY_POINT_GROUP = "mtl_ehrnet.kd_losses"
NONE = "none"
# What a teacher cache keeps of the teacher's tags for a tag loss: the people grouped at build time, the raw
# tag maps, or nothing. Registered tag losses get the raw maps unless they say otherwise.
TAG_FORMS = ("people", "tags", None)


@dataclass(frozen=True)
class KDContext:
    """What a KD loss may read besides the maps.

    Attributes:
        temperature: the segmentation KD temperature T (``KDSettings.temperature``).
        push_kind: the ground-truth associative-embedding push (``"exp"`` or ``"max"``), for tag losses.
    """

    temperature: float = 1.0
    push_kind: str = "exp"


KDLoss = Callable[[Dict[str, torch.Tensor], Dict[str, torch.Tensor], KDContext], torch.Tensor]


@dataclass(frozen=True)
class _Entry:
    fn: KDLoss
    tag_form: Optional[str]


_REGISTRY: Dict[str, Dict[str, _Entry]] = {task: {} for task in KD_TASKS}


def register_kd_loss(task: str, name: str, fn: KDLoss, *, tag_form: Optional[str] = "tags") -> KDLoss:
    """Makes ``fn`` the KD loss ``name`` of ``task`` (see the module docstring); returns ``fn``.

    Args:
        tag_form: for ``pose_tags`` only: what a teacher cache must keep of the teacher's tags for ``fn``
            (``"people"``: the confident people grouped at build time, as ``teacher["joints"]``; ``"tags"``: the
            raw maps; None: nothing).
    Raises:
        ValueError: an unknown task, the reserved name ``"none"``, a name already taken, or an unknown form.
    """
    if task not in KD_TASKS:
        raise ValueError(f"no KD task {task!r}; tasks: {', '.join(KD_TASKS)}")
    if name == NONE:
        raise ValueError(f"{NONE!r} is reserved: it leaves the {task} term out")
    if name in _REGISTRY[task]:
        raise ValueError(f"a {task} KD loss named {name!r} is registered already")
    if tag_form not in TAG_FORMS:
        raise ValueError(f"tag_form must be one of {TAG_FORMS}, got {tag_form!r}")
    _REGISTRY[task][name] = _Entry(fn, tag_form if task == "pose_tags" else None)
    return fn


def kd_loss_names(task: str) -> Tuple[str, ...]:
    """The names ``task`` takes: ``"none"`` and every registered loss (installed entry points included)."""
    _load_entry_points()
    return (NONE, *sorted(_REGISTRY[task]))


def kd_loss(task: str, name: str) -> Optional[KDLoss]:
    """The loss ``name`` of ``task``; None for ``"none"``.

    Raises:
        ValueError: naming the registered losses when ``name`` is none of them.
    """
    if name == NONE:
        return None
    return _entry(task, name).fn


def tag_form(name: str) -> Optional[str]:
    """What a teacher cache keeps of the teacher's tags for the ``pose_tags`` loss ``name``."""
    return None if name == NONE else _entry("pose_tags", name).tag_form


def check_kd_loss(task: str, name: str) -> None:
    """Raises ValueError naming the registered losses when ``task`` has none called ``name``."""
    if name != NONE:
        _entry(task, name)


def _entry(task: str, name: str) -> _Entry:
    if task not in KD_TASKS:
        raise ValueError(f"no KD task {task!r}; tasks: {', '.join(KD_TASKS)}")
    if name not in _REGISTRY[task]:
        _load_entry_points()
    if name not in _REGISTRY[task]:
        raise ValueError(f"no {task} KD loss {name!r}; registered: {', '.join(kd_loss_names(task))} "
                         "(add one with distill.register_kd_loss)")
    return _REGISTRY[task][name]


def _load_entry_points() -> None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        task, _, name = entry.name.partition(".")
        if task in KD_TASKS and name and name not in _REGISTRY[task]:
            register_kd_loss(task, name, entry.load())


def _mse(student: Dict[str, torch.Tensor], teacher: Dict[str, torch.Tensor], context: KDContext) -> torch.Tensor:
    return heatmap_kd(student, teacher, teacher.get("valid_lr"))


def _pseudo(student: Dict[str, torch.Tensor], teacher: Dict[str, torch.Tensor], context: KDContext) -> torch.Tensor:
    if "joints" in teacher:  # people grouped when the cache was built
        pull, push = associative_embedding(student["tags"].float(), teacher["joints"], context.push_kind)
        return pull + push
    return tag_kd_pseudo(student["tags"], teacher, context.push_kind)


def _relational(student: Dict[str, torch.Tensor], teacher: Dict[str, torch.Tensor],
                context: KDContext) -> torch.Tensor:
    if "tags" not in teacher:
        raise ValueError("relational tag KD needs the teacher's tags, but the teacher cache holds none: "
                         "build the cache with tag_kd='relational' (another --cache DIR)")
    return tag_kd_relational(student["tags"], teacher["tags"], teacher["heatmaps_lr"])


def _kl(student: Dict[str, torch.Tensor], teacher: Dict[str, torch.Tensor], context: KDContext) -> torch.Tensor:
    return pixel_kl(student["seg"], teacher["seg"], context.temperature, teacher.get("valid_lr"))


def _cwd(student: Dict[str, torch.Tensor], teacher: Dict[str, torch.Tensor], context: KDContext) -> torch.Tensor:
    return channel_wise(student["seg"], teacher["seg"], max(context.temperature, 1.0))


register_kd_loss("pose_heatmaps", "mse", _mse)
register_kd_loss("pose_tags", "pseudo", _pseudo, tag_form="people")
register_kd_loss("pose_tags", "relational", _relational, tag_form="tags")
register_kd_loss("seg", "kl", _kl)
register_kd_loss("seg", "cwd", _cwd)
