"""A 2-node Ray cluster on 127.0.0.1 whose worker node does not see the driver's output folder or local cache (its
own mount namespace, a tmpfs over the driver's folder), with ``--storage`` on a local S3 endpoint (moto): the run
completes, cells run on both nodes (``cells.csv`` column ``node``), and a second run reuses every pretraining from the
storage (slow). Needs root (``unshare --mount``); skipped elsewhere."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from s3_server import free_port, s3_endpoint

REPO = Path(__file__).resolve().parents[1]


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ray") is None:
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _can_unshare(), reason="needs 'unshare --mount' (root) to hide the driver's disk from a node")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(environment of the driver, driver folder, S3 bucket URI) of a head node and a worker node that cannot see the
    driver folder; both stopped at the end."""
    tmp = tmp_path_factory.mktemp("two-nodes")
    driver = tmp / "driver"
    driver.mkdir()
    with s3_endpoint("medssl-nodes") as s3_env:
        port = free_port()
        env = {**os.environ, **s3_env, "RAY_AUTH_MODE": "token", "RAY_TRAIN_V2_ENABLED": "1", "RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}
        node = ["--num-cpus", "1", "--object-store-memory", str(200 * 2**20), "--disable-usage-stats"]
        try:
            subprocess.run(["ray", "start", "--head", "--port", str(port), "--include-dashboard", "false", *node], check=True, capture_output=True,
                           env={**env, "MEDSSL_NODE_CACHE": str(tmp / "node-a")}, timeout=120)
            # the worker node's processes keep the mount namespace: the driver's folder is an empty tmpfs for them
            script = f"mount -t tmpfs tmpfs {driver} && exec ray start --address 127.0.0.1:{port} {' '.join(node)}"
            subprocess.run(["unshare", "--mount", "bash", "-c", script], check=True, capture_output=True,
                           env={**env, "MEDSSL_NODE_CACHE": str(tmp / "node-b")}, timeout=120)
            yield env, driver, f"127.0.0.1:{port}"
        finally:
            subprocess.run(["ray", "stop", "--force"], capture_output=True, env=env, timeout=120)


def _run(env, driver: Path, address: str, output: str, storage: str) -> pd.DataFrame:
    command = [sys.executable, str(REPO / "run_benchmark.py"), "--methods", "csi", "--tasks", "brats", "--profile", "tiny", "--fractions", "100%",
               "--cache-dir", str(driver / "cache"), "--output", str(driver / output), "--address", address, "--storage", storage]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return pd.read_csv(driver / output / "cells.csv", keep_default_na=False)


def _worker_sees(env, address: str, folder: Path) -> list[list[str]]:
    """What each node lists in ``folder`` (a Ray task pinned to each node)."""
    probe = f"""
import os, ray
ray.init(address={address!r}, logging_level="ERROR")
@ray.remote(num_cpus=0)
def ls(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else None
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy
print([ray.get(ls.options(scheduling_strategy=strategy(n, soft=False)).remote({str(folder)!r})) for n in nodes])
"""
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    return eval(out.strip().splitlines()[-1])  # noqa: S307 - our own probe's printed list


def test_two_nodes_without_a_shared_disk_run_every_cell_with_storage_on_s3(cluster):
    env, driver, address = cluster
    (driver / "marker").write_text("the driver's disk")
    views = _worker_sees(env, address, driver)
    assert len(views) == 2 and ["marker"] in views and [] in views  # one node sees the driver's folder, the other an empty one
    cells = _run(env, driver, address, "first", "s3://medssl-nodes/small")
    assert set(cells["status"]) == {"done"} and cells["node"].nunique() == 2  # csi and its scratch baseline, one per node


@pytest.mark.slow
def test_a_second_run_reuses_every_pretraining_from_the_storage(cluster):
    env, driver, address = cluster
    first = _run(env, driver, address, "full-first", "s3://medssl-nodes/full")
    second = _run(env, driver, address, "full-second", "s3://medssl-nodes/full")
    pretrained = second[second["method"] != "scratch"]
    assert set(first["status"]) == set(second["status"]) == {"done"} and len(pretrained)
    assert pretrained["pretrain_reused"].astype(str).eq("True").all()
    assert first["node"].nunique() == 2
