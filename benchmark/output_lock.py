"""One writer per output folder: a run holds ``<output>/.run.lock`` (an OS file lock, ``filelock``) while it runs.

A second run on the same folder is refused at once with the folder and the holder (pid, host, start time, run
name, from ``.run.holder.json``). The OS releases the lock of a process that died (kill -9, a lost machine), so a
later run takes the folder over; it warns when the dead run left its holder record behind.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from benchmark.errors import BenchmarkInputError
from benchmark.records import write_atomic

LOCK_NAME, HOLDER_NAME = ".run.lock", ".run.holder.json"


def _holder(path: Path) -> str:
    try:
        who = json.loads(path.read_text())
    except (OSError, ValueError):
        return "holder unknown"
    return f"run {who.get('run')!r}, pid {who.get('pid')} on {who.get('host')}, started {who.get('started')}"


@contextmanager
def one_writer(output: Path, *, run_name: str) -> Iterator[None]:
    """Hold ``output`` for this run (see the module docstring); BenchmarkInputError when another live run holds it."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    lock, holder = FileLock(str(output / LOCK_NAME), timeout=0), output / HOLDER_NAME
    try:
        lock.acquire()
    except Timeout:
        raise BenchmarkInputError(f"output folder {output} is in use by another run ({_holder(holder)}); wait for it to end, "
                                  "or give this run another --output / --run-name") from None
    try:
        if holder.exists():
            print(f"[medssl-bench] warning: taking over output folder {output} from a run that ended without releasing it "
                  f"({_holder(holder)})", file=sys.stderr, flush=True)
        write_atomic(holder, json.dumps({"run": run_name, "pid": os.getpid(), "host": socket.gethostname(),
                                         "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()
