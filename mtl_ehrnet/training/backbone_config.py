"""The backbone-pretraining job's configuration (``mtl-ehrnet train-backbone``): one frozen tree, read from YAML and
written to ``OUT/config.yaml``."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Optional, Tuple

from mtl_ehrnet.training.job_config import recipe_run, resolved_run
from mtl_ehrnet.training.run_config import RunConfig, classifier_recipe


@dataclass(frozen=True)
class BackboneData:
    """``root``: an ImageFolder or CIFAR-100 folder; ``input_size``: the training and evaluation side (None: the
    Table 4.1 size of phi); ``crop_scale``: the area range of the random-resized crop."""

    root: Optional[str] = None
    input_size: Optional[int] = None
    crop_scale: Tuple[float, float] = (0.08, 1.0)

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"data.crop_scale must satisfy 0 < low <= high <= 1, got {list(self.crop_scale)}")


@dataclass(frozen=True)
class BackboneConfig:
    """One classifier pretraining run: ``efficientnet_b<phi>`` (``lite``: no SE, ReLU6), its data, and the run
    (``run``: :class:`~mtl_ehrnet.training.RunConfig` fields over the thesis 4.1 recipe, 200 epochs; ``step_every``:
    x0.1 every N epochs after the warm-up, unless ``run.milestones`` is set)."""

    phi: Optional[int] = None
    lite: bool = False
    data: BackboneData = field(default_factory=BackboneData)
    step_every: int = 30
    run: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.step_every < 1:
            raise ValueError(f"step_every must be a positive number of epochs, got {self.step_every}")
        self.run_config()

    def check_complete(self) -> None:
        """Refuses a config without phi or data."""
        if self.phi is None or self.data.root is None:
            raise ValueError("the config sets no phi or data (train-backbone --phi N --data DIR)")

    def run_config(self) -> RunConfig:
        """The thesis 4.1 recipe for ``run["epochs"]`` (200 when unset) with ``run``'s fields over it."""
        return recipe_run(classifier_recipe, self.run, default_epochs=200, step_every=self.step_every)

    def resolved(self) -> "BackboneConfig":
        """This config with ``run`` holding every resolved RunConfig field."""
        return replace(self, run=resolved_run(self.run_config()))
