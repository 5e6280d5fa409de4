"""One writer per output folder (benchmark/output_lock.py): a live run's folder refuses a second run at once, naming
the folder and the holder; a lock left by a dead process is taken over with a warning."""
from __future__ import annotations

import json
import subprocess
import sys

from benchmark.cli import main
from benchmark.output_lock import HOLDER_NAME, one_writer


def test_second_run_on_a_live_runs_folder_is_refused_at_once(tmp_path, capsys):
    output = tmp_path / "out"
    with one_writer(output, run_name="first"):
        code = main(["--methods", "scratch", "--tasks", "brats", "--profile", "tiny", "--output", str(output),
                     "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(output) in err and "in use by another run" in err and "'first'" in err
    assert not (output / "cells.csv").exists()


def test_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, capsys):
    output = tmp_path / "out"
    # a run killed with -9: its OS lock went with it, its holder record stayed
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    output.mkdir()
    (output / HOLDER_NAME).write_text(json.dumps({"run": "killed", "pid": int(dead.stdout), "host": "here", "started": "then"}))
    with one_writer(output, run_name="second"):
        assert json.loads((output / HOLDER_NAME).read_text())["run"] == "second"
    err = capsys.readouterr().err
    assert "taking over" in err and "'killed'" in err
    assert not (output / HOLDER_NAME).exists()  # released
    with one_writer(output, run_name="third"):  # and free again
        pass
