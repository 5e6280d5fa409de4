"""The Ray dashboard as a user watches it: every unit of work is found by its name through the dashboard's HTTP
APIs, with its latest metrics. One cluster serves both paths (its own module: the test needs a cluster started
WITH the dashboard): --num-workers 2 (a Ray Train run named after the unit, in the Train view) and one worker
(no Train run: a Tune trial whose actor is named after the unit, and the unit's Ray task of the same name, whose log
holds its live loss and validation score)."""
from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import ray

from benchmark import ray_runner
from benchmark.cli import main


def _get(url: str, *, raw: bool = False):
    request = urllib.request.Request(url)
    token = Path.home() / ".ray" / "auth_token"
    if token.exists():  # Ray 2.60's dashboard token authentication
        request.add_header("Authorization", f"Bearer {token.read_text().strip()}")
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return body.decode() if raw else json.loads(body)


def _run(tmp_path, name: str, *extra: str):
    argv = ["--methods", "scratch", "--tasks", "brats", "--profile", "tiny", "--fractions", "100%", "--cache-dir", str(tmp_path / "cache"),
            "--output", str(tmp_path / name), *extra]
    assert main(argv) == 0
    cells = pd.read_csv(tmp_path / name / "cells.csv", keep_default_na=False)
    assert set(cells.status) == {"done"}
    return cells


def _unit_actors(url: str) -> dict[str, dict]:
    actors = _get(f"{url}/api/v0/actors?detail=true&limit=1000")["data"]["result"]["result"]
    return {a["repr_name"]: a for a in actors if a.get("class_name", "").endswith("MedsslUnit")}


def test_every_unit_is_found_by_name_with_its_latest_metrics(tmp_path, monkeypatch):
    ray_runner.shutdown()
    # The cluster is the test's own, started before the runs as a user's notebook or `ray start` would: a run
    # stops only the cluster it started itself, and the dashboard is read after the runs have returned.
    for key, value in ray_runner._TRAIN_ENV.items():
        monkeypatch.setenv(key, value)
    context = ray.init(address="local", include_dashboard=True, log_to_driver=False, logging_level="ERROR")
    try:
        if not context.dashboard_url:
            pytest.skip("the Ray dashboard did not start on this machine (ray[default] missing?)")
        url = f"http://{context.dashboard_url}"
        ddp = _run(tmp_path, "ddp", "--num-workers", "2", "--cpus-per-worker", "1")
        # --num-workers 2: the Train view lists a Train run per unit, named after it
        runs = _get(f"{url}/api/train/v2/runs/v1")
        names = {run["name"] for run in runs.get("train_runs", runs.get("runs", []))}
        expected = {f"scratch-unet2d-brats-s0-f0-scratch-{cell_id[-8:]}" for cell_id in ddp.cell_id}
        assert expected <= names, (expected, names)

        # one worker (same cluster, seed 1: other units): no Train run; the unit's trial actor and its task, by name
        local = _run(tmp_path, "local", "--seeds", "1")
        expected = {f"scratch-unet2d-brats-s1-f0-scratch-{cell_id[-8:]}": cell_id for cell_id in local.cell_id}
        actors = _unit_actors(url)
        assert set(expected) <= set(actors), (expected, sorted(actors))
        runs = _get(f"{url}/api/train/v2/runs/v1")
        assert not set(expected) & {run["name"] for run in runs.get("train_runs", runs.get("runs", []))}
        for unit, cell_id in expected.items():
            # the unit's task, by name (filtered by the State API: actor method calls are tasks too, thousands of them)
            query = urllib.parse.urlencode({"detail": "true", "filter_keys": "name", "filter_predicates": "=", "filter_values": unit})
            tasks = [t for t in _get(f"{url}/api/v0/tasks?{query}")["data"]["result"]["result"] if t["state"] == "FINISHED"]
            assert len(tasks) == 1, (unit, tasks)
            # the task's log (its dashboard page) holds its live loss and the validation-selected score
            query = urllib.parse.urlencode({"task_id": tasks[0]["task_id"], "suffix": "out", "lines": 1000})
            log = _get(f"{url}/api/v0/logs/file?{query}", raw=True)
            cell = local.set_index("cell_id").loc[cell_id]
            assert f"validation-selected step {cell.selected_step} (score {float(cell.validation_score):.4f})" in log
            assert re.search(r"step \d+/\d+ loss \d", log)
    finally:
        ray_runner.shutdown()
