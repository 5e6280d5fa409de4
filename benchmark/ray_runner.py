"""The only module that imports Ray: cluster start-up and Ray Train execution of planned groups.

Each group (one pretraining + its fine-tuning cells) runs as one Ray Train ``TorchTrainer``
job with ``num_workers`` workers (DDP across GPUs on a cluster, one CPU worker on a laptop).
Groups run ``concurrency`` at a time. The worker's results travel back as a reported Ray
checkpoint (a ``results.json``), which works on multi-node clusters where the driver and the
workers share only Ray's storage path.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

import ray


def start_ray(address: str | None, *, dashboard: bool = True) -> str:
    """Join ``address`` (e.g. "auto" or "ray://host:10001"), or start an embedded local cluster.

    Returns the dashboard URL ("" when none).
    """
    if ray.is_initialized():
        return ""
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    kwargs: dict[str, Any] = {"log_to_driver": True, "logging_level": "ERROR"}
    if address:
        context = ray.init(address=address, **kwargs)
    else:
        context = ray.init(include_dashboard=dashboard, **kwargs)
    url = getattr(context, "dashboard_url", "") or ""
    return f"http://{url}" if url and not url.startswith("http") else url


def _train_loop(config: dict[str, Any]) -> None:
    """Runs inside every Ray Train worker: plain-PyTorch ``run_group`` with Ray's DDP hooks."""
    import torch
    import ray.train
    import ray.train.torch

    from benchmark.train import Hooks, run_group

    context = ray.train.get_context()
    torch.set_num_threads(max(1, int(config["cpus_per_worker"])))
    def log(message: str) -> None:
        # Not print(): Ray Train V2 patches print to also log, which shows every line twice.
        sys.stdout.write(message + "\n")
        sys.stdout.flush()

    hooks = Hooks(
        log=log,
        prepare_model=lambda model, **kw: ray.train.torch.prepare_model(model, parallel_strategy_kwargs=kw or None),
        prepare_loader=lambda loader: ray.train.torch.prepare_data_loader(loader, move_to_device=False),
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
    )
    results = run_group(config["spec"], hooks)
    if hooks.is_main:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "results.json").write_text(json.dumps(results))
            ray.train.report({"cells": len(results)}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report({"cells": 0})  # report is a barrier: every worker must call it


def run_group_on_ray(spec: dict[str, Any], *, num_workers: int, gpus_per_worker: float, cpus_per_worker: float, storage: Path, name: str) -> list[dict[str, Any]]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"spec": spec, "cpus_per_worker": cpus_per_worker},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=str(Path(storage).resolve())),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    with result.checkpoint.as_directory() as folder:
        return json.loads(Path(folder, "results.json").read_text())


def run_groups(
    jobs: list[tuple[str, dict[str, Any]]],
    *,
    num_workers: int,
    gpus_per_worker: float,
    cpus_per_worker: float | None,
    concurrency: int | None,
    storage: Path,
    on_done: Callable[[str, list[dict[str, Any]] | None, BaseException | None], None],
) -> None:
    """Run (name, spec) jobs as Ray Train jobs; ``on_done`` gets each job's results or its error.

    By default as many jobs run at once as the cluster's CPUs (or GPUs) fit, so one job's
    start-up overlaps another's compute.
    """
    total_cpus = float(ray.cluster_resources().get("CPU", 1))
    if cpus_per_worker is None:
        cpus_per_worker = 1.0 if gpus_per_worker else max(1.0, total_cpus // max(1, num_workers) // 2 or 1)
    if concurrency is None:
        if gpus_per_worker:
            concurrency = max(1, int(ray.cluster_resources().get("GPU", 0) // (gpus_per_worker * num_workers)))
        else:
            concurrency = max(1, int(total_cpus // (cpus_per_worker * num_workers)))

    def run(name: str, spec: dict[str, Any]):
        return run_group_on_ray(spec, num_workers=num_workers, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, storage=storage, name=name)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(run, name, spec): name for name, spec in jobs}
        for future in as_completed(futures):
            name = futures[future]
            try:
                on_done(name, future.result(), None)
            except BaseException as exc:  # noqa: BLE001 - one failed job must not lose the others
                on_done(name, None, exc)


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()
