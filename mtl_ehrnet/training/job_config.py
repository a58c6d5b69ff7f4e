"""Sections that several jobs' config trees share (:mod:`mtl_ehrnet.config_tree`): augmentation, the
ground-truth terms, and the training run over a recipe."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from mtl_ehrnet.training.run_config import RunConfig
from mtl_ehrnet.training.task_loss import ground_truth_loss

# RunConfig fields a run sets for itself (the loaded weights' lr factors, the record of the job's settings).
_SET_BY_THE_RUN = ("lr_factors", "extra")


@dataclass(frozen=True)
class Augmentation:
    """:class:`mtl_ehrnet.data.TrainTransform` options; None keeps HigherHRNet's."""

    scale_range: Optional[Tuple[float, float]] = None
    max_rotation: Optional[float] = None
    max_translate: Optional[float] = None
    sigma: Optional[float] = None

    def options(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class GroundTruthTerms:
    """The ground-truth loss options (:func:`mtl_ehrnet.training.task_loss.ground_truth_loss`)."""

    ae_weight: float = 1e-3
    ae_push: str = "exp"
    class_weights: str = "none"
    ohem: Optional[float] = None

    def __post_init__(self) -> None:
        ground_truth_loss(("pose",), **self.options())  # refuses an unknown push or class-weight rule

    def options(self) -> Dict[str, Any]:
        return {"ae_weight": self.ae_weight, "ae_push": self.ae_push, "class_weights": self.class_weights,
                "ohem": self.ohem}


def recipe_run(recipe: Callable[..., RunConfig], run: Mapping[str, Any], default_epochs: int = 300,
               **defaults: Any) -> RunConfig:
    """``recipe(epochs, **defaults, **run)``: the recipe for ``run["epochs"]`` (``default_epochs`` when unset)
    with ``run``'s fields over it; unknown fields are refused with the known ones."""
    run = dict(run)
    RunConfig.from_dict(dict(run))
    epochs = run.pop("epochs", default_epochs)
    for key in ("milestones", "task_ratios"):
        if run.get(key) is not None:
            run[key] = tuple(run[key])
    return recipe(epochs, **{**defaults, **run})


def resolved_run(config: RunConfig) -> Dict[str, Any]:
    """Every field of ``config`` that a config file carries, so that :func:`recipe_run` rebuilds it exactly."""
    data = config.to_dict()
    for key in _SET_BY_THE_RUN:
        data.pop(key, None)
    return data
