"""Validation split over 2 gloo ranks scores exactly what one process scores, and a failure on one rank
reaches the other."""
from pathlib import Path
from typing import Any, Dict, Sequence

import torch
from gloo_ranks import run_ranks
from torch import nn

from evaluation.dataset_eval import evaluate_joint
from mtl_ehrnet import create_model
from mtl_ehrnet.data import SyntheticLayout
from mtl_ehrnet.training import distributed
from mtl_ehrnet.training.validation import validate_on_ranks
from teachers.validators import JointValidator


class _FailsOnRankOne:
    """A sharded validator whose part on rank 1 raises."""

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        return self.reduce([self.shard(model, 0, 1)])

    def shard(self, model: nn.Module, rank: int, world: int) -> int:
        if rank == 1:
            raise ValueError("unreadable label")
        return rank

    def reduce(self, parts: Sequence[Any]) -> Dict[str, float]:
        return {"parts": float(len(parts))}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("mtl_h-4", input_size=64).eval()


def _validate(rank: int, root: str, out: str) -> None:
    context = distributed.setup("cpu")
    model, validator = _model(), JointValidator(root, batch_size=1)
    with torch.inference_mode():
        metrics = validate_on_ranks(validator, model, context)
        parts = distributed.run_on_every_rank(lambda: validator.shard(model, rank, 2), context)
    failure = ""
    try:
        validate_on_ranks(_FailsOnRankOne(), model, context)
    except Exception as error:  # noqa: BLE001
        failure = f"{type(error).__name__}: {error}"
    torch.save({"metrics": metrics, "parts": parts, "failure": failure}, Path(out) / f"rank{rank}.pt")


def test_two_ranks_score_what_one_process_scores(synth: SyntheticLayout, tmp_path: Path) -> None:
    assert run_ranks(_validate, str(synth.joint_root), str(tmp_path)) == [0, 0]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    model = _model()
    with torch.inference_mode():
        single = evaluate_joint(model, synth.joint_root, batch_size=1)
        whole = JointValidator(synth.joint_root, batch_size=1).shard(model, 0, 1)
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    assert ranks[0]["metrics"]["AP"] == single["AP"] and ranks[0]["metrics"]["mIoU"] == single["mIoU"] > 0
    (pose0, seg0), (pose1, seg1) = ranks[0]["parts"]
    assert pose0 and pose1 and seg0.sum() > 0 and seg1.sum() > 0  # both ranks did a share
    # The gathered predictions are the single process's, image for image.
    assert sorted(pose0 + pose1, key=lambda batch: batch[0]) == whole[0]
    assert torch.equal(seg0 + seg1, whole[1])
    assert ranks[0]["failure"] == "RankFailedError: rank 1 failed: ValueError: unreadable label"
    assert ranks[1]["failure"] == "ValueError: unreadable label"
