"""Run a function on two gloo CPU workers (torch.multiprocessing) to compare with one worker.

Used by the distributed checks of the contrastive losses: ``fn(rank, *args)`` must be a
module-level (picklable) function; its return values come back in rank order.
"""
from __future__ import annotations

import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on a loaded 2-core machine
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = fn(rank, *args)
        dist.barrier()  # no rank tears the group down while another still runs a collective
        torch.save(result, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_distributed(fn, *args, world_size: int = 2) -> list:
    """``[fn(0, *args), fn(1, *args), ...]`` each run in its own process of one gloo group."""
    with tempfile.TemporaryDirectory() as out_dir:
        paths = [os.path.join(out_dir, f"{r}.pt") for r in range(world_size)]
        try:
            mp.spawn(_worker, args=(world_size, _free_port(), out_dir, fn, args), nprocs=world_size, join=True)
        except mp.ProcessExitedException:
            # gloo can abort a process while it tears down after the results were written ("terminate called
            # without an active exception", seen under load); the results are complete, so that is not a failure.
            if not all(os.path.exists(p) for p in paths):
                raise
        return [torch.load(p, weights_only=False) for p in paths]
