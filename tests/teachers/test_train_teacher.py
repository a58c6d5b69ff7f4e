"""train-teacher end to end: SIGKILL + --resume equals an uninterrupted run; 2-process torchrun on CPU."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch

from mtl_ehrnet.checkpoint import read_checkpoint
from mtl_ehrnet.data import SyntheticLayout
from mtl_ehrnet.training.metric_log import read_log


def _command(synth: SyntheticLayout, out: Path, *extra: str) -> List[str]:
    return [
        sys.executable, "-m", "mtl_ehrnet", "train-teacher", "pose", "--model", "pose_h-4",
        "--coco", str(synth.coco_annotations("train")), str(synth.coco_images("train")),
        "--set", "data.input_size=64", "--epochs", "2", "--batch-size", "2", "--workers", "0",
        "--set", "run.checkpoint_every=1", "--set", "run.val_every=0", "--set", "run.log_every=1", "--out", str(out),
        *extra,
    ]


def _weights(path: Path) -> dict:
    return read_checkpoint(path)["model"]


# The interrupted run SIGKILLs itself right after its third checkpoint (step 3 of 8, mid-way through epoch 1
# of 2), so the kill lands at the same point on every machine, however fast.
_KILL_AFTER_THIRD_CHECKPOINT = """
import os, signal, sys
from mtl_ehrnet.cli import main
from mtl_ehrnet.training import engine
save, written = engine.save_checkpoint, []
def save_then_die(path, *args, **kwargs):
    result = save(path, *args, **kwargs)
    written.append(path)
    if len(written) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
engine.save_checkpoint = save_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_then_resume_equals_uninterrupted(synth: SyntheticLayout, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_command(synth, straight), check=True, env=env, capture_output=True)

    command = [sys.executable, "-c", _KILL_AFTER_THIRD_CHECKPOINT, *_command(synth, killed)[3:]]
    interrupted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert interrupted.returncode == -signal.SIGKILL, interrupted.stderr[-2000:]
    state = read_checkpoint(killed / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 3), "killed after the third of eight steps"

    resumed = subprocess.run(_command(synth, killed, "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final, reference = _weights(killed / "last.pt"), _weights(straight / "last.pt")
    assert final.keys() == reference.keys()
    for key in reference:
        assert torch.equal(final[key], reference[key]), key


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_torchrun_two_processes_on_cpu(synth: SyntheticLayout, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = ["torchrun", "--nproc_per_node=2", "--no-python", "mtl-ehrnet"] + _command(synth, out)[3:]
    command[command.index("--epochs") + 1] = "1"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    finished = [r for r in read_log(out / "log.jsonl", "event") if r["event"] == "finished"]
    assert finished == [{**finished[0], "ranks_in_sync": True, "world": 2}]
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt"]
    # 12 images -> 9 train, skip_empty may drop some; each step consumes 2 x 2 images across both ranks.
    assert len(read_log(out / "log.jsonl", "train")) >= 1
