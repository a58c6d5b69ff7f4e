"""RNG states in checkpoints: a run resumed on a machine that shows fewer GPUs restores what exists."""
from typing import List, Tuple

import pytest
import torch

from mtl_ehrnet.training.seeding import rng_state, set_rng_state


def _device_index(device) -> int:  # noqa: ANN001
    if isinstance(device, int):
        return device
    device = torch.device(device)
    return 0 if device.index is None else device.index


@pytest.fixture()
def one_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> List[Tuple[int, int]]:
    """Pretends this process sees one GPU whose generator state is ``[7]``; records ``(device, state)`` of every
    CUDA state restored, and fails as CUDA does for a device that is not there."""
    restored: List[Tuple[int, int]] = []

    def set_state(state: torch.Tensor, device="cuda") -> None:  # noqa: ANN001
        index = _device_index(device)
        if index >= 1:
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")
        restored.append((index, int(state[0])))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": torch.tensor([7], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([7], dtype=torch.uint8)])
    for module in (torch.cuda, torch.cuda.random):
        monkeypatch.setattr(module, "set_rng_state", set_state)
    return restored


def test_a_checkpoint_of_eight_gpus_resumes_where_one_is_visible(one_visible_gpu: List[Tuple[int, int]]) -> None:
    state = rng_state()
    state["cuda"] = [torch.tensor([i], dtype=torch.uint8) for i in range(8)]  # as written by a process seeing 8
    set_rng_state(state)
    assert one_visible_gpu == [(0, 0)]


def test_only_the_current_device_generator_is_saved_and_restored(one_visible_gpu: List[Tuple[int, int]]) -> None:
    state = rng_state()
    assert isinstance(state["cuda"], torch.Tensor) and state["cuda"].tolist() == [7]
    set_rng_state(state)
    assert one_visible_gpu == [(0, 7)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_generator_round_trip_on_the_current_device() -> None:
    state = rng_state()
    drawn = torch.rand(4, device="cuda")
    set_rng_state(state)
    assert torch.equal(torch.rand(4, device="cuda"), drawn)
    # A checkpoint of an earlier version, written where more GPUs were visible than here.
    set_rng_state({**state, "cuda": [state["cuda"]] * (torch.cuda.device_count() + 4)})
    assert torch.equal(torch.rand(4, device="cuda"), drawn)
