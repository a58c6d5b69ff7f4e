"""Runs a function in local processes joined by a gloo process group, as ``torchrun --nproc_per_node`` on the
CPU would: each process sees ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and a rendezvous address."""
from __future__ import annotations

import multiprocessing
import os
import socket
import time
from typing import Any, Callable, List


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _entry(fn: Callable[..., Any], rank: int, world: int, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        fn(rank, *args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], *args: Any, world: int = 2, timeout: float = 120.0) -> List[int]:
    """Runs ``fn(rank, *args)`` in ``world`` spawned processes (``fn`` must be importable: a module-level
    function); returns their exit codes, in rank order.

    Raises:
        AssertionError: a process still ran after ``timeout`` seconds (it is killed): a hang.
    """
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_entry, args=(fn, rank, world, port, args)) for rank in range(world)]
    # In the environment a child starts with: OpenMP reads it before the child runs any of our code, and
    # processes that each start a thread per core slow each other down many times over.
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        for process in processes:
            process.start()
    finally:
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = threads
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
    for rank in hung:
        processes[rank].kill()
        processes[rank].join()
    assert not hung, f"ranks {hung} still ran after {timeout:.0f} s: a hang"
    return [int(process.exitcode) for process in processes]
