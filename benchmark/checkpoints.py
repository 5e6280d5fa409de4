"""Checkpoints inside a training stage: what a stage saves so that, killed at any point, it continues from its last
checkpoint with the numbers an uninterrupted stage would have produced.

A stage (a pretraining, an evaluation network, one cell's fine-tuning) owns one file, ``StageCheckpoint.path``,
written atomically every ``every_steps`` optimiser steps (``--checkpoint-every``), or every ``every_seconds`` of
wall time when no step interval is set, and at the stage's last step. It holds everything the rest of the stage
draws from or updates:

* the trained module (the unwrapped one: DDP's ``module``, keys of the plain module), the optimiser, the LR
  scheduler and the fp16 GradScaler;
* every random state of every worker: the global torch RNG (dropout, drop-path, the loader's base seed), CUDA's,
  Python's and NumPy's, and the stage's own ``torch.Generator`` objects (corruption draws, mixup / CarveMix draws);
  under DDP rank 0 gathers every rank's states, so each rank resumes its own;
* the data position (the step: samples are drawn by index, so the loader restarts at ``step x batch x workers``),
  the loss curve, the step times, and the caller's extra state (model selection: best score, step and weights,
  the validation curve).

Rank 0 writes; every rank reads, and the ranks continue from the same step or all start over (rank 0's file
decides). A file that cannot be read (truncated, corrupt, another stage's) is reported with its path and ignored:
the stage starts over, it is never trusted. The file is a path or a storage URI (``benchmark.storage``: every
worker of a cluster sees it). This module knows nothing about Ray: the run layer retries a lost worker, and the
retried stage finds its file here.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from benchmark import storage

FORMAT_VERSION = 1
TIME_CHECK_STEPS = 10  # a time-based interval is checked every this many steps (a collective under DDP)


def capture_rng(generators: dict[str, torch.Generator], device: torch.device | None = None) -> dict[str, Any]:
    """This process's random states and ``generators``' (what a resumed stage must draw from next). On CUDA only the
    worker's own ``device``: a retried worker may see other GPUs (another node, another local rank)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
             "generators": {name: g.get_state() for name, g in generators.items()}}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator], device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank0_decides(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a broadcast under DDP; the value itself otherwise)."""
    if not _distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class StageCheckpoint:
    """One stage's checkpoint file and when to write it (see the module docstring).

    ``identity``: what the stage is (its cache key, its cell id and round); a file whose identity differs is not
    this stage's and is ignored. ``log``: where "resumed from" and "unreadable" lines go."""

    def __init__(self, path: str, *, identity: dict[str, Any], every_steps: int | None, every_seconds: float,
                 rank: int = 0, world_size: int = 1, log: Callable[[str], None] = print):
        self.path, self.identity = str(path), identity
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.rank, self.world_size, self.log = rank, world_size, log
        self._last_save = time.monotonic()

    def start(self) -> None:
        """The stage's steps begin: the time interval counts from here (not from waiting for a lock or a cache)."""
        self._last_save = time.monotonic()

    # ---- reading -----------------------------------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        """The saved state for this rank (its own random states under ``"rng"``), or None: no file, or one that is
        unreadable or not this stage's (reported, then ignored). Under DDP every rank gets the state of rank 0's
        step, or all get None."""
        state = self._read()
        step = rank0_decides(None if state is None else state["step"])
        if state is not None and state["step"] != step:  # this rank read another version of the file than rank 0
            self.log(f"  checkpoint {self.path}: rank {self.rank} read step {state['step']}, rank 0 step {step}; the stage starts over")
            state = None
        if _distributed():  # all continue or all start over
            flags = [None] * dist.get_world_size()
            dist.all_gather_object(flags, state is not None)
            if not all(flags):
                return None
        return state

    def _read(self) -> dict[str, Any] | None:
        if not storage.exists(self.path):
            return None
        try:
            state = storage.load_torch(self.path, map_location="cpu", weights_only=False)
            if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
                raise ValueError(f"not a checkpoint of format {FORMAT_VERSION}")
        except Exception as exc:  # noqa: BLE001 - truncated, corrupt or foreign: start over, never trust it
            self.log(f"  checkpoint {self.path} is unreadable ({type(exc).__name__}: {str(exc)[:200]}); the stage starts over")
            return None
        if state["identity"] != self.identity:
            self.log(f"  checkpoint {self.path} belongs to another stage ({state['identity']}); the stage starts over")
            return None
        if len(state["rng"]) != self.world_size:
            self.log(f"  checkpoint {self.path} was written by {len(state['rng'])} worker(s), this stage runs {self.world_size}; "
                     "the stage starts over (its random draws could not continue)")
            return None
        return {**state, "rng": state["rng"][self.rank]}

    # ---- writing -----------------------------------------------------------------------------------------------
    def due(self, steps_done: int, steps: int) -> bool:
        """Whether to write after ``steps_done`` of ``steps`` steps: at the last step, every ``every_steps`` steps,
        or (no step interval) when ``every_seconds`` passed since the last write, looked at every
        ``TIME_CHECK_STEPS`` steps (under DDP that look is a broadcast); the same answer on every rank."""
        if steps_done >= steps:
            return True
        if self.every_steps is not None:
            return steps_done % self.every_steps == 0
        if steps_done % TIME_CHECK_STEPS:
            return False
        due = time.monotonic() - self._last_save >= self.every_seconds
        if _distributed():  # rank 0's clock decides, so every rank reaches the gather below together
            flag = [due]
            dist.broadcast_object_list(flag, src=0)
            due = bool(flag[0])
        return due

    def save(self, state: dict[str, Any], rng: dict[str, Any]) -> None:
        """Write ``state`` with every rank's ``rng`` (a collective under DDP: every rank calls it)."""
        ranks = [rng]
        if _distributed():
            ranks = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, rng)
        if self.rank == 0:
            storage.save_torch({"format": FORMAT_VERSION, "identity": self.identity, **state, "rng": ranks}, self.path)
        self._last_save = time.monotonic()

    def remove(self) -> None:
        if self.rank == 0:
            storage.delete(self.path)
