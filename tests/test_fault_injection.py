"""Fault injection on real runs of the README's command (a subprocess with its own embedded Ray cluster): a Ray worker
killed with SIGKILL in the middle of a pretraining, after it passed a checkpoint, is retried by Ray and continues from
that checkpoint (the run ends with exit 0, the cell is done, ``pretrain_resumed_from`` > 0); a driver killed the same
way, then the same command again, resumes the pretraining from its checkpoint and ends with the table of an
uninterrupted run (slow); Ctrl-C ends the run with one line and exit code 130, no stack trace after it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
WORKER_LINE = re.compile(r"\((csi-unet2d-brats-\S+) pid=(\d+)\)\S*\s+pretrain csi step")  # the console colours the prefix


def _command(tmp: Path, output: str, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "run_benchmark.py"), "--methods", "csi", "--tasks", "brats", "--fractions", "100%", "--max-steps", "30",
            "--checkpoint-every", "3", "--cache-dir", str(tmp / "cache"), "--output", str(tmp / output), "--run-name", output, "--no-dashboard",
            *extra]


class Run:
    """The command in a subprocess, its console collected line by line."""

    def __init__(self, command: list[str]):
        self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")), daemon=True)
        self.reader.start()

    def wait_for(self, predicate, *, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.process.kill()
        pytest.fail(f"{what} did not happen; console:\n" + "".join(self.lines[-60:]))

    def finish(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code


def _log_lines(tmp: Path, output: str) -> list[str]:
    """The run's log file (logs/run.log): the workers' lines, which the console leaves out (benchmark/console.py)."""
    path = tmp / output / "logs" / "run.log"
    return path.read_text().splitlines() if path.exists() else []


def _pretraining_worker(tmp: Path, output: str) -> int | None:
    for line in _log_lines(tmp, output):
        if match := WORKER_LINE.search(line):
            return int(match.group(2))
    return None


def _checkpoint(tmp: Path) -> Path | None:
    return next((tmp / "cache" / "checkpoints").glob("pretrain-*.pt"), None)


def _kill_pretraining_after_a_checkpoint(run: Run, tmp: Path, victim) -> None:
    run.wait_for(lambda: _checkpoint(tmp), timeout=300, what="a pretraining checkpoint")
    os.kill(victim(), signal.SIGKILL)


def _cells(tmp: Path, output: str) -> pd.DataFrame:
    return pd.read_csv(tmp / output / "cells.csv", keep_default_na=False)


def test_killed_worker_is_retried_and_continues_from_its_checkpoint(tmp_path):
    run = Run(_command(tmp_path, "worker-kill"))
    pid = run.wait_for(lambda: _pretraining_worker(tmp_path, "worker-kill"), timeout=300, what="the pretraining's first log line")
    _kill_pretraining_after_a_checkpoint(run, tmp_path, lambda: pid)
    assert run.finish() == 0, "".join(run.lines[-60:])
    cells = _cells(tmp_path, "worker-kill")
    csi = cells[cells.method == "csi"].iloc[0]
    assert csi.status == "done"
    assert int(csi.pretrain_resumed_from) > 0, "".join(run.lines[-60:])
    assert set(cells.status) == {"done"}
    assert any("resumed from its checkpoint" in line for line in _log_lines(tmp_path, "worker-kill"))
    assert not list((tmp_path / "cache" / "checkpoints").glob("*.pt"))  # served and removed


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    run = Run(_command(tmp_path, "ctrl-c"))
    run.wait_for(lambda: _pretraining_worker(tmp_path, "ctrl-c"), timeout=300, what="the pretraining's first log line")
    run.process.send_signal(signal.SIGINT)
    assert run.finish(timeout=60) == 130
    console = "".join(run.lines)
    line = "interrupted: run the same command again to continue (finished cells and search trials are kept)"
    assert console.count(line) == 1 and "Traceback" not in console, console[-3000:]
    assert not console[console.index(line) + len(line):].strip(), console[-3000:]  # nothing after it: no Ray trace or warning
    assert not (tmp_path / "ctrl-c" / ".run.holder.json").exists()  # the output folder is free for the same command


@pytest.mark.slow
def test_killed_driver_then_same_command_resumes_with_the_uninterrupted_table(tmp_path):
    reference = Run(_command(tmp_path / "reference", "reference"))
    assert reference.finish() == 0, "".join(reference.lines[-60:])

    run = Run(_command(tmp_path, "driver-kill"))
    _kill_pretraining_after_a_checkpoint(run, tmp_path, lambda: run.process.pid)
    run.finish()
    time.sleep(5)  # Ray's reaper takes the embedded cluster down with its driver
    again = Run(_command(tmp_path, "driver-kill"))
    assert again.finish() == 0, "".join(again.lines[-60:])
    cells = _cells(tmp_path, "driver-kill")
    assert int(cells[cells.method == "csi"].iloc[0].pretrain_resumed_from) > 0
    columns = ["method", "backbone", "task", "fraction", "case_id", "metric", "value"]
    got = pd.read_csv(tmp_path / "driver-kill" / "results.csv")[columns].sort_values(columns[:-1]).reset_index(drop=True)
    want = pd.read_csv(tmp_path / "reference" / "reference" / "results.csv")[columns].sort_values(columns[:-1]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
