"""Run configuration of a training job, with the thesis's recipes as defaults."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import yaml

from mtl_ehrnet.config_keys import reject_unknown_keys
from mtl_ehrnet.training.ema import check_decay

AMP_MODES = ("off", "fp16", "bf16")
# Loading and augmenting a batch of 512 px crops takes several cores; past 8 workers a process gains little.
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """DataLoader workers for one training process: the CPUs it may use shared among the processes ``torchrun``
    starts on this machine (``LOCAL_WORLD_SIZE``), at most :data:`MAX_DEFAULT_WORKERS`."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_DEFAULT_WORKERS, per_process))


@dataclass
class RunConfig:
    """Everything a training run needs besides the model, the data and the loss.

    Attributes:
        epochs: epochs to train.
        batch_size: images per step per process.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr, weight_decay, momentum: optimizer settings (momentum for SGD).
        schedule: ``"step"`` (x ``gamma`` at each of ``milestones``, in epochs), ``"poly"``
            (``(1 - t/T)**poly_power`` per step) or ``"constant"``; ``warmup_epochs`` of linear warm-up.
        grad_clip: max gradient norm, or None.
        ema_decay: keep an exponential moving average of the weights with this decay (e.g. 0.999; None:
            off); validation, ``best.pt`` and the ``model`` entry of every checkpoint then hold the
            average, and ``train_model`` the weights being trained.
        amp: mixed precision: ``"fp16"`` (autocast float16 with a GradScaler, on CUDA only; ignored on the
            CPU), ``"bf16"`` (autocast bfloat16, no scaler: bfloat16 has float32's range; CUDA or CPU) or
            ``"off"``. ``True`` / ``False`` (configs written before the modes) read as ``"fp16"`` / ``"off"``.
        channels_last: NHWC memory format for the model, the images and the loss module (online teachers,
            hint adapters): about 20 % faster on CPU with oneDNN, and what tensor cores want on CUDA.
        sync_bn: under ``torchrun`` with several processes, batch-norm statistics over every rank's batch
            (``torch.nn.SyncBatchNorm``, CUDA only): the model's BatchNorm layers are converted in place,
            and behave as plain BatchNorm again once no process group is up.
        workers: DataLoader worker processes (default :func:`default_workers`); with any, they persist
            from epoch to epoch.
        log_every: write a ``train`` record (the mean of every term over the steps since the last one) and
            refresh the progress bar every N optimizer steps and at the end of each epoch; the terms are summed
            on the device in between, so a step reads nothing back but its non-finite check.
        seed: seeds initialisation, data order and augmentation.
        checkpoint_every: also write ``last.pt`` every N optimizer steps (0: only at epoch ends).
        max_nonfinite: stop after this many consecutive steps with a non-finite loss.
        val_every: validate every N epochs (0: never).
        monitor: validation metric whose maximum selects ``best.pt`` (e.g. ``"AP"`` or ``"mIoU"``).
        steps_per_epoch: cap on steps per epoch (None: the whole dataset).
        task_ratios: for a task-mixed training set (:class:`mtl_ehrnet.data.MixedTaskDataset`), each
            task's share of every batch, e.g. ``(1, 1)``; None samples the mixed set uniformly (each
            task's share follows its dataset's size).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        lr_factors: learning-rate factor per parameter-name prefix (``{"backbone.": 0.3}``); the longest
            matching prefix wins, other parameters train at ``lr``.
        extra: free-form fields a caller stores with the run (model name, data paths...).
    """

    epochs: int = 300
    batch_size: int = 8
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "step"
    milestones: Tuple[float, ...] = (200, 260)
    gamma: float = 0.1
    poly_power: float = 0.9
    warmup_epochs: float = 0.0
    grad_clip: Optional[float] = None
    ema_decay: Optional[float] = None
    amp: str = "fp16"
    channels_last: bool = True
    sync_bn: bool = False
    workers: int = field(default_factory=default_workers)
    log_every: int = 10
    seed: int = 0
    checkpoint_every: int = 0
    max_nonfinite: int = 20
    val_every: int = 1
    monitor: str = ""
    steps_per_epoch: Optional[int] = None
    task_ratios: Optional[Tuple[float, ...]] = None
    device: str = "auto"
    lr_factors: Dict[str, float] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer must be adam, adamw or sgd, got {self.optimizer!r}")
        if self.schedule not in ("step", "poly", "constant"):
            raise ValueError(f"schedule must be step, poly or constant, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(
                f"epochs, batch_size and lr must be positive (got {self.epochs}, {self.batch_size}, {self.lr})"
            )
        if self.ema_decay is not None:
            check_decay(self.ema_decay)
        if isinstance(self.amp, bool):
            self.amp = "fp16" if self.amp else "off"
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp (--amp) must be one of {AMP_MODES}, got {self.amp!r}")
        if self.workers < 0 or self.log_every < 1:
            raise ValueError(f"workers must be >= 0 and log_every >= 1, got {self.workers} and {self.log_every}")
        self.milestones = tuple(self.milestones)
        if any(m < 0 for m in self.milestones):
            raise ValueError(f"milestones are epochs and must be >= 0, got {self.milestones}")
        self.lr_factors = {str(k): float(v) for k, v in self.lr_factors.items()}
        if any(not math.isfinite(v) or v < 0 for v in self.lr_factors.values()):
            raise ValueError(f"lr_factors must be finite and >= 0, got {self.lr_factors}")
        if self.task_ratios is not None:
            self.task_ratios = tuple(float(r) for r in self.task_ratios)
            if any(r < 0 for r in self.task_ratios) or not any(self.task_ratios):
                raise ValueError(f"task_ratios must be non-negative with a positive sum, got {self.task_ratios}")

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        data["task_ratios"] = None if self.task_ratios is None else list(self.task_ratios)
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RunConfig":
        reject_unknown_keys(cls, data, "run config")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "RunConfig":
        """Reads a YAML run config (``yaml.safe_load``: no code runs); fields it lacks take their defaults."""
        return cls.from_dict(cls.read_yaml(path))

    @classmethod
    def read_yaml(cls, path: Union[str, Path]) -> Dict[str, Any]:
        """Only the fields a YAML run config sets (checked: unknown keys are refused), for layering over a
        recipe."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"run config not found: {path}")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of run settings, got {type(data).__name__}")
        reject_unknown_keys(cls, data, f"run config {path}")
        if "milestones" in data:
            data["milestones"] = tuple(data["milestones"])
        if data.get("task_ratios") is not None:
            data["task_ratios"] = tuple(data["task_ratios"])
        return data


def pose_recipe(epochs: int = 300, **changes: Any) -> RunConfig:
    """Thesis 4.2: Adam, lr 1e-3, wd 1e-4, x0.1 at 2/3 and 13/15 of training (epochs 200, 260 of 300)."""
    base = dict(
        optimizer="adam",
        lr=1e-3,
        weight_decay=1e-4,
        schedule="step",
        milestones=(round(epochs * 200 / 300), round(epochs * 260 / 300)),
        monitor="AP",
    )
    base.update(changes)
    return RunConfig(epochs=epochs, **base)


def seg_recipe(epochs: int = 450, **changes: Any) -> RunConfig:
    """Thesis 4.3 / HRNet-V2: SGD lr 0.01, momentum 0.9, wd 5e-4, poly 0.9."""
    base = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="poly", monitor="mIoU")
    base.update(changes)
    return RunConfig(epochs=epochs, **base)


def classifier_recipe(epochs: int = 200, warmup_epochs: float = 5, step_every: int = 30, **changes: Any) -> RunConfig:
    """Thesis 4.1 (compact EfficientNet pretraining): SGD, momentum 0.9, wd 1e-4, ``warmup_epochs`` of linear
    warm-up to lr 0.05, then x0.1 every ``step_every`` epochs (milestones 35, 65, ... for the thesis's
    5 + 195 epochs). The thesis warms up from 1e-4; our warm-up starts at 0.05 / warm-up steps."""
    milestones = tuple(range(int(warmup_epochs) + step_every, epochs, step_every))
    base = dict(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="step",
        milestones=milestones,
        gamma=0.1,
        warmup_epochs=warmup_epochs,
        batch_size=64,
        monitor="top1",
    )
    base.update(changes)
    return RunConfig(epochs=epochs, **base)
