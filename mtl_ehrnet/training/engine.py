"""The one training loop. Teachers (ground-truth losses) and the distilled student plug in their loss;
nothing else differs.

``fit`` owns: optimizer and LR schedule from the run config, mixed precision (fp16 with a GradScaler, or
bf16), gradient clipping, DDP under ``torchrun`` (only rank 0 writes; SyncBatchNorm on request), seeded data
order and augmentation through one DataLoader whose workers persist from epoch to epoch, a tqdm bar with the
loss and throughput, a JSON-lines log of every term and metric, per-epoch validation through a callable (split
over the ranks when it is a :class:`~mtl_ehrnet.training.validation.ShardedValidator`), ``last.pt`` (atomic,
every N steps and at each epoch end) and ``best.pt``, exact resume, and skipping of non-finite steps. With
``config.ema_decay`` it also keeps an exponential moving average of the weights, which validation, ``best.pt``
and every checkpoint's ``model`` entry hold (``train_model``: the weights being trained, for resuming).

A step reads nothing back from the device where its optimizer is fused (the default where PyTorch has a
fused kernel): a step whose loss is not finite is dropped by the optimizer's kernel, and its count is read
with the loss terms, which are summed on the device and read every ``config.log_every`` steps and at the end
of each epoch (see :mod:`~mtl_ehrnet.training.nonfinite` and
:class:`~mtl_ehrnet.training.running_terms.RunningTerms`). Elsewhere it reads one thing, in a single copy after
the backward pass: whether its loss is finite (with, under ``torchrun``, which loss-module parameters got a
gradient on any rank).
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from mtl_ehrnet.checkpoint import load_weights, read_checkpoint, save_checkpoint
from mtl_ehrnet.data.mixed import MixedTaskDataset, TaskMixBatchSampler
from mtl_ehrnet.models.efficienthrnet import EfficientHRNet
from mtl_ehrnet.training import distributed
from mtl_ehrnet.training.ema import build_ema
from mtl_ehrnet.training.metric_log import MetricLog
from mtl_ehrnet.training.nonfinite import NonFiniteGuard
from mtl_ehrnet.training.optim import build_optimizer, build_scheduler
from mtl_ehrnet.training.run_config import RunConfig
from mtl_ehrnet.training.running_terms import RunningTerms
from mtl_ehrnet.training.seeding import (
    EpochBatches,
    EpochBatchSampler,
    SeededDataset,
    rng_state,
    seed_everything,
    set_rng_state,
)
from mtl_ehrnet.training.validation import Validator, validate_on_ranks

logger = logging.getLogger(__name__)

LossFn = Callable[[Dict[str, torch.Tensor], Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]
# Settings that must not change when a run is resumed (the data order or the model would differ).
_FIXED_ON_RESUME = ("batch_size", "seed", "optimizer", "schedule", "steps_per_epoch", "ema_decay")


@dataclass
class FitResult:
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Optional[Path]
    best_value: Optional[float]
    history: List[Dict[str, float]] = field(default_factory=list)
    skipped_steps: int = 0


class _ResumedBatches(Sampler[List[int]]):
    """Batches ``skip`` to ``stop`` of another batch sampler (resuming mid-epoch, capping an epoch)."""

    def __init__(self, batches: Sampler[List[int]], skip: int, stop: int) -> None:
        self.batches, self.skip, self.stop = batches, skip, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.skip)

    def __iter__(self) -> Iterator[List[int]]:
        return itertools.islice(iter(self.batches), self.skip, self.stop)


def _epoch_batches(
    train_set: Dataset, config: RunConfig, epoch: int, rank: int, world: int, skip: int
) -> Sampler[List[int]]:
    """This rank's batches of ``epoch``: a seeded permutation, or fixed task shares (``config.task_ratios``)."""
    if config.task_ratios is None:
        return EpochBatchSampler(
            len(train_set),
            config.batch_size,
            config.seed,
            epoch,
            rank,
            world,
            skip=skip,
            max_batches=config.steps_per_epoch,
        )
    if not isinstance(train_set, MixedTaskDataset):
        raise ValueError(f"task_ratios {config.task_ratios} need a MixedTaskDataset, got {type(train_set).__name__}")
    mix = TaskMixBatchSampler(
        train_set, config.batch_size, config.task_ratios, seed=config.seed, num_replicas=world, rank=rank
    )
    mix.set_epoch(epoch)
    stop = len(mix) if config.steps_per_epoch is None else min(len(mix), config.steps_per_epoch)
    return _ResumedBatches(mix, skip, stop)


def epoch_steps(train_set: Dataset, config: RunConfig, rank: int = 0, world: int = 1) -> int:
    """The steps of each epoch of a run of ``config`` on ``train_set`` (on each of ``world`` processes)."""
    return len(_epoch_batches(train_set, config, 0, rank, world, skip=0))


def train_loader(
    data: Dataset, batches: Sampler[List[Tuple[int, int]]], config: RunConfig, device: torch.device
) -> DataLoader:
    """The one DataLoader of a run: its workers persist from epoch to epoch (``batches`` moves on with
    :meth:`EpochBatches.set_epoch`), and batches come in page-locked memory on CUDA, so that the copy to the
    device overlaps the step before."""
    # Its own generator: creating the iterator must not draw from the global RNG, which drives stochastic
    # depth and is restored exactly on resume (augmentation is seeded per sample by SeededDataset).
    return DataLoader(
        data,
        batch_sampler=batches,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
        generator=torch.Generator().manual_seed(config.seed),
    )


def run_loader(train_set: Dataset, config: RunConfig, device: torch.device, rank: int = 0,
               world: int = 1) -> Tuple[EpochBatches, DataLoader]:
    """The batches a run trains on: the sampler that moves from epoch to epoch (``set_epoch(epoch, skip)``) and the
    one loader over ``train_set`` (augmentation seeded per (epoch, sample), see :class:`SeededDataset`)."""
    batches = EpochBatches(lambda epoch, skip: _epoch_batches(train_set, config, epoch, rank, world, skip))
    return batches, train_loader(SeededDataset(train_set, config.seed), batches, config, device)


def step_batch(batch: Dict[str, torch.Tensor], device: torch.device,
              memory_format: torch.memory_format) -> Dict[str, torch.Tensor]:
    """A loader's batch as a step sees it: on ``device``, the images (B, 3, H, W) in ``memory_format``."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    batch["image"] = batch["image"].contiguous(memory_format=memory_format)
    return batch


def training_batches(train_set: Dataset, config: RunConfig,
                     device: torch.device = torch.device("cpu")) -> Iterator[Tuple[int, int, Dict[str, torch.Tensor]]]:
    """``(epoch, step in epoch, batch)`` of every step that :func:`fit` takes with ``config`` in one process, each
    batch as the step's loss sees it (on ``device``, images in the run's memory format): for work that must see a
    run's exact batches ahead of it, such as recording its teachers' answers."""
    memory_format = run_memory_format(config)
    batches, loader = run_loader(train_set, config, device)
    for epoch in range(config.epochs):
        batches.set_epoch(epoch)
        for step, batch in enumerate(loader):
            yield epoch, step, step_batch(batch, device, memory_format)


def run_memory_format(config: RunConfig) -> torch.memory_format:
    """The memory format a run of ``config`` keeps its model, images and online teachers in."""
    return torch.channels_last if config.channels_last else torch.contiguous_format


def autocast_dtype(config: RunConfig, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``config.amp`` on ``device``, or None for float32 (fp16 only on CUDA)."""
    if config.amp == "bf16":
        return torch.bfloat16
    if config.amp == "fp16" and device.type == "cuda":
        return torch.float16
    return None


@contextlib.contextmanager
def _cudnn_autotuned(device: torch.device) -> Iterator[None]:
    """cuDNN picks the fastest kernels for the first shapes it sees; training crops have one fixed size, so the
    search pays once. Restored afterwards: validation sees images of many sizes."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = previous or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def fit(
    model: EfficientHRNet,
    loss_fn: LossFn,
    train_set: Dataset,
    config: RunConfig,
    out_dir: Union[str, Path],
    *,
    validate: Optional[Validator] = None,
    resume: bool = False,
) -> FitResult:
    """Trains ``model`` on ``train_set`` with ``loss_fn``; see the module docstring.

    Under ``torchrun`` DDP averages the model's gradients; the trainable parameters of a loss module (learned
    loss weights, hint adapters) start from rank 0's values and have their gradients averaged over the ranks
    after each backward pass, so they stay equal on every rank; gradient clipping covers both.

    Args:
        model: the network (its parameters are optimised; modules inside ``loss_fn``, such as frozen
            teachers, are not).
        loss_fn: ``(outputs, batch) -> {name: weighted scalar term}``; the loss is the sum. An ``nn.Module``'s
            parameters with ``requires_grad`` are trained with the model's. Its ``prepare(batch)``, where it has
            one, is called before the model's forward pass on that batch.
        train_set: map-style dataset of training-sample dicts (see ``mtl_ehrnet.data.sample``).
        config: run settings.
        out_dir: where ``last.pt``, ``best.pt`` and ``log.jsonl`` go.
        validate: ``model -> {metric: value}`` after each ``val_every`` epochs: a
            :class:`~mtl_ehrnet.training.validation.ShardedValidator` runs on every rank, each on its share of
            the set; a plain callable runs on rank 0 only. An exception on any rank stops every rank.
        resume: continue from ``out_dir/last.pt`` exactly where it stopped. Refused when a setting the data
            order, the schedule or the model depends on differs from the stored run, the number of processes
            (world size) included: steps per epoch, and so the step-based schedules and the epoch at which
            an LR milestone falls in steps, depend on it. The run is not rescaled to a new world size; resume
            with as many processes as it was started with.
    """
    ctx = distributed.setup(config.device)
    distributed.check_sync_batchnorm(config.sync_bn, ctx)
    seed_everything(config.seed)
    out_dir = Path(out_dir)
    last, best = out_dir / "last.pt", out_dir / "best.pt"
    amp_dtype = autocast_dtype(config, ctx.device)
    memory_format = run_memory_format(config)
    model = distributed.sync_batchnorm(model, config.sync_bn, ctx)
    model.to(ctx.device, memory_format=memory_format)
    if isinstance(loss_fn, nn.Module):
        # Online teachers and hint adapters read the same NHWC images the model does.
        loss_fn.to(ctx.device, memory_format=memory_format)
    net: nn.Module = model
    if ctx.world > 1:
        net = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    steps_per_epoch = epoch_steps(train_set, config, ctx.rank, ctx.world)
    # A loss module may train parameters of its own (hint adapters, learned loss weights); frozen
    # teachers inside it have requires_grad=False and stay out.
    named = list(model.named_parameters())
    if isinstance(loss_fn, nn.Module):
        named += [(f"loss.{name}", p) for name, p in loss_fn.named_parameters() if p.requires_grad]
    trainable = [p for _, p in named]
    # Kept equal over ranks by hand rather than by DDP, which would broadcast the loss module's buffers (DWA's
    # running sums) from rank 0 at every forward pass, and refuses a step whose terms skip a parameter.
    loss_parameters = [p for name, p in named if name.startswith("loss.")]
    distributed.broadcast_parameters(loss_parameters, ctx)
    optimizer = build_optimizer(trainable, config, names=[name for name, _ in named])
    forward_kwargs = dict(getattr(loss_fn, "forward_kwargs", {}))
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    # bf16 has float32's exponent range: its gradients need no scaling.
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    ema = None if config.ema_decay is None else build_ema(model, config.ema_decay)
    # What validation sees and what checkpoints hand to users: the average when there is one.
    served: nn.Module = model if ema is None else ema.module
    epoch, skip, global_step = 0, 0, 0
    best_value: Optional[float] = None
    history: List[Dict[str, float]] = []
    if resume:
        epoch, skip, global_step, best_value, history = _resume(
            last, model, optimizer, scheduler, scaler, config, ctx.world, loss_fn, ema
        )
    log = MetricLog(out_dir, enabled=ctx.is_main)
    if ctx.is_main:
        log.write(
            "event",
            epoch,
            global_step,
            {"event": "resume" if resume else "start", "world": ctx.world, "device": str(ctx.device)},
        )

    def save(path: Path, epoch_: int, step_in_epoch: int) -> None:
        if ctx.is_main:
            trained = {} if ema is None else {"train_model": model.state_dict(), "ema_updates": int(ema.n_averaged)}
            save_checkpoint(
                path,
                served,
                **trained,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                epoch=epoch_,
                step_in_epoch=step_in_epoch,
                global_step=global_step,
                rng=rng_state(),
                world_size=ctx.world,
                run_config=config.to_dict(),
                best_value=best_value,
                history=history,
                loss_state=loss_fn.training_state_dict() if hasattr(loss_fn, "training_state_dict") else {},
            )

    batches, loader = run_loader(train_set, config, ctx.device, ctx.rank, ctx.world)
    running = RunningTerms()

    def report_dropped(step_in_epoch: int, values: Dict[str, float]) -> None:
        if ctx.is_main:
            log.write("event", epoch, global_step,
                      {"event": "nonfinite_loss_skipped", "step_in_epoch": step_in_epoch, **values})

    guard = NonFiniteGuard(config.max_nonfinite, report_dropped, str(last))
    # Which loss-module parameters got a gradient is agreed on the host (see distributed.absent_gradients).
    host_agreed = ctx.world > 1 and bool(loss_parameters)
    prepare = getattr(loss_fn, "prepare", None)
    while epoch < config.epochs:
        batches.set_epoch(epoch, skip)
        net.train()
        steps_done, started = 0, time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            initial=skip,
            disable=not ctx.is_main,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            leave=False,
        )
        with _cudnn_autotuned(ctx.device):
            for step_in_epoch, batch in enumerate(loader, start=skip):
                batch = step_batch(batch, ctx.device, memory_format)
                with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    if prepare is not None:  # e.g. teachers that start on the batch beside the forward pass
                        prepare(batch)
                    terms = loss_fn(net(batch["image"], **forward_kwargs), batch)
                loss = torch.stack([t.float() for t in terms.values()]).sum()
                optimizer.zero_grad(set_to_none=True)
                # Every rank runs the backward pass, a non-finite one too, so that DDP's reducer stays in step;
                # the step is then dropped on every rank alike.
                scaler.scale(loss).backward()
                finite = torch.isfinite(loss)
                on_device = guard.can_drop_on_device(optimizer, scaler, host_agreed)
                present = None
                if on_device:
                    nonfinite = distributed.any_rank((~finite).float(), ctx)
                    finite = nonfinite < 1
                    guard.mark(nonfinite, terms, step_in_epoch)
                else:
                    absent = distributed.absent_gradients(loss_parameters, ctx)
                    flags = distributed.all_min(torch.stack([finite.float(), *absent]), ctx)
                    if flags[0] < 1:
                        optimizer.zero_grad(set_to_none=True)
                        guard.dropped_on_host(terms, step_in_epoch)
                        continue
                    guard.stepped_on_host()
                    present = [v < 1 for v in flags[1:]]
                distributed.average_gradients(loss_parameters, ctx, present=present)
                if config.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
                if on_device:
                    optimizer.found_inf = nonfinite  # read by the fused kernel, as a GradScaler's flag is
                # With a fused optimizer an fp16 scaler hands its own overflow flag to the kernel, which skips the
                # update on the device: no read-back here either.
                try:
                    scaler.step(optimizer)
                finally:
                    if on_device:
                        del optimizer.found_inf
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                global_step += 1
                steps_done += 1
                running.add({**terms, "loss": loss}, keep=finite if on_device else None)
                bar.update()
                if global_step % config.log_every == 0 or step_in_epoch + 1 == steps_per_epoch:
                    values = running.read()
                    guard.read()
                    rate = steps_done * config.batch_size * ctx.world / max(1e-9, time.perf_counter() - started)
                    if "loss" in values:
                        bar.set_postfix(loss=f"{values['loss']:.4g}", img_s=f"{rate:.1f}")
                    if ctx.is_main and values:
                        log.write("train", epoch, global_step, {**values, "lr": optimizer.param_groups[0]["lr"]})
                if config.checkpoint_every and global_step % config.checkpoint_every == 0:
                    save(last, epoch, step_in_epoch + 1)
        bar.close()
        if hasattr(loss_fn, "end_epoch"):
            loss_fn.end_epoch()
        epoch, skip = epoch + 1, 0
        summary = running.epoch_means()
        summary.update(seconds=time.perf_counter() - started, lr=optimizer.param_groups[0]["lr"])
        summary["images_per_s"] = steps_done * config.batch_size * ctx.world / max(1e-9, summary["seconds"])
        if ctx.is_main:
            log.write("epoch", epoch, global_step, summary)
        if validate is not None and config.val_every and (epoch % config.val_every == 0 or epoch == config.epochs):
            improved = _validate(validate, served, config, ctx, log, epoch, global_step, history, best_value)
            if improved is not None:
                best_value = improved
                save(best, epoch, 0)  # after the update, so best.pt records its own value
        save(last, epoch, 0)
        if ctx.is_main:
            tqdm.write(
                _epoch_line(
                    epoch,
                    config.epochs,
                    summary,
                    history[-1] if history and history[-1].get("epoch") == epoch else None,
                )
            )
    del loader  # its persistent workers end with it
    guard.read()
    in_sync = distributed.parameters_in_sync(trainable, ctx)
    if ctx.is_main:
        log.write(
            "event",
            epoch,
            global_step,
            {
                "event": "finished",
                "ranks_in_sync": in_sync,
                "world": ctx.world,
                "skipped_steps": guard.skipped_total,
            },
        )
    log.close()
    distributed.cleanup()
    return FitResult(out_dir, last, best if best.is_file() else None, best_value, history, guard.skipped_total)


def _validate(validate, model, config, ctx, log, epoch, global_step, history, best_value):  # noqa: ANN001
    """Runs validation on every rank (see :func:`validate_on_ranks`) and logs it; returns the monitored value
    when it is a new best, else None (the same on every rank)."""
    model.eval()
    with torch.inference_mode():
        metrics = validate_on_ranks(validate, model, ctx)
    metrics["epoch"] = epoch
    history.append(metrics)
    if ctx.is_main:
        log.write("val", epoch, global_step, metrics)
    value = metrics.get(config.monitor)
    if value is not None and math.isfinite(value) and (best_value is None or value > best_value):
        return value
    return None


def _resume(
    last: Path,
    model,
    optimizer,
    scheduler,
    scaler,
    config: RunConfig,
    world: int,  # noqa: ANN001
    loss_fn,
    ema,
):
    if not last.is_file():
        raise FileNotFoundError(f"cannot resume: no checkpoint at {last}")
    state = read_checkpoint(last)
    stored = RunConfig.from_dict(state["run_config"])
    changed = {
        k: (getattr(stored, k), getattr(config, k))
        for k in _FIXED_ON_RESUME
        if getattr(stored, k) != getattr(config, k)
    }
    if changed:
        raise ValueError(f"cannot resume {last}: these settings differ from the stored run (stored, now): {changed}")
    stored_world = state.get("world_size")  # absent from checkpoints written before it was recorded
    if stored_world is not None and stored_world != world:
        raise ValueError(
            f"cannot resume {last}: it was trained with world size {stored_world} (processes) and this run has world "
            f"size {world}; steps per epoch and the learning-rate schedule depend on it. Resume with "
            f"torchrun --nproc_per_node={stored_world} (or as many processes over several nodes), or start a new run"
        )
    if ema is None:
        load_weights(model, last, state)
    else:
        load_weights(ema.module, last, state)
        model.load_state_dict(state["train_model"])
        ema.n_averaged.fill_(state["ema_updates"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    if hasattr(loss_fn, "load_training_state_dict"):
        loss_fn.load_training_state_dict(state.get("loss_state", {}))
    return (
        state["epoch"],
        state["step_in_epoch"],
        state["global_step"],
        state.get("best_value"),
        list(state.get("history", [])),
    )


def _epoch_line(epoch: int, epochs: int, summary: Dict[str, float], metrics: Optional[Dict[str, float]]) -> str:
    parts = [
        f"epoch {epoch}/{epochs}",
        f"loss {summary.get('loss', float('nan')):.4g}",
        f"{summary['images_per_s']:.1f} img/s",
    ]
    if metrics:
        parts += [f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch"]
    return "  ".join(parts)
