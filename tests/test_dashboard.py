"""The Ray dashboard as a user watches it: with --num-workers 2 every Job is a Ray Train run named after the Job,
listed by the dashboard's Train API (its own module: the test needs a cluster started WITH the dashboard)."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from benchmark import ray_runner
from benchmark.cli import main


def _get(url: str) -> dict:
    request = urllib.request.Request(url)
    token = Path.home() / ".ray" / "auth_token"
    if token.exists():  # Ray 2.60's dashboard token authentication
        request.add_header("Authorization", f"Bearer {token.read_text().strip()}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_train_view_lists_every_job_by_name(tmp_path, capsys):
    ray_runner.shutdown()
    try:
        argv = ["--methods", "scratch", "--tasks", "brats", "--profile", "tiny", "--fractions", "100%", "--num-workers", "2",
                "--cpus-per-worker", "1", "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out")]
        assert main(argv) == 0
        out = capsys.readouterr().out
        url = next((line.split("Ray dashboard: ")[1].split()[0] for line in out.splitlines() if "Ray dashboard: " in line), None)
        if url is None:
            pytest.skip("the Ray dashboard did not start on this machine (ray[default] missing?)")
        runs = _get(f"{url}/api/train/v2/runs/v1")
        names = {run["name"] for run in runs.get("train_runs", runs.get("runs", []))}
        cells = pd.read_csv(tmp_path / "out" / "cells.csv", keep_default_na=False)
        assert set(cells.status) == {"done"}
        expected = {f"scratch-unet2d-brats-s0-f0-scratch-{cell_id[-8:]}" for cell_id in cells.cell_id}
        assert expected <= names, (expected, names)
    finally:
        ray_runner.shutdown()
