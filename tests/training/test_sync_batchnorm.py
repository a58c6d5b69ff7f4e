"""SyncBatchNorm: converted only when asked for and several processes train under a process group; refused
off CUDA before training starts."""
from pathlib import Path

import torch
from gloo_ranks import run_ranks
from torch import nn

from mtl_ehrnet import create_model
from mtl_ehrnet.training import GroundTruthLoss, RunConfig, distributed, fit


def _sync_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


def _plain_norms(model: nn.Module) -> int:
    return sum(type(m) is nn.BatchNorm2d for m in model.modules())


def _on_a_rank(rank: int, out: str) -> None:
    context = distributed.setup("cpu")
    assert context.world == 2 and torch.distributed.is_initialized()
    model = create_model("pose_h-4", input_size=64)
    norms = _plain_norms(model)
    assert distributed.sync_batchnorm(model, False, context) is model and _sync_norms(model) == 0
    converted = distributed.sync_batchnorm(model, True, context)
    assert converted is model and _sync_norms(model) == norms and _plain_norms(model) == 0
    config = RunConfig(epochs=1, batch_size=2, workers=0, steps_per_epoch=1, val_every=0, device="cpu", sync_bn=True)
    try:
        fit(create_model("pose_h-4", input_size=64), GroundTruthLoss(("pose",)), [], config, out)
    except ValueError as error:
        (Path(out) / f"rank{rank}.txt").write_text(str(error))


def test_conversion_happens_only_under_a_process_group_with_the_option_set(tmp_path: Path) -> None:
    single = distributed.Context(0, 1, 0, torch.device("cuda", 0))
    model = create_model("pose_h-4", input_size=64)
    assert distributed.sync_batchnorm(model, True, single) is model and _sync_norms(model) == 0
    distributed.check_sync_batchnorm(True, single)  # one process: nothing to synchronise, nothing refused
    assert run_ranks(_on_a_rank, str(tmp_path), timeout=90) == [0, 0]
    refusal = "sync_bn (--sync-bn) needs CUDA devices; this run trains on cpu"
    assert [(tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)] == [refusal, refusal]
