"""The only module that imports Ray: cluster start-up and Ray Train execution of planned groups.

Groups (one pretraining + its fine-tuning cells each) are dealt round-robin into
``concurrency`` lanes; each lane is ONE Ray Train ``TorchTrainer`` job with ``num_workers``
workers (DDP across GPUs on a cluster, one CPU worker on a laptop) that runs its groups one
after another, so the ~10-20 s start-up of a Train job is paid once per lane, not per group.
Results stream back to the driver through a Ray queue as each group finishes, so they are
recorded cell by cell even if a later group fails or the run is interrupted; this also works
on multi-node clusters where workers and driver share no file system.
"""
from __future__ import annotations

import os
import queue as queue_module
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

import ray

DONE = "__lane_done__"


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


def _log(message: str) -> None:
    # Not print(): Ray Train V2 patches print to also log, which shows every line twice.
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _train_loop(config: dict[str, Any]) -> None:
    """Runs inside every Ray Train worker: plain-PyTorch ``run_group`` for each group of the lane."""
    import torch
    import ray.train
    import ray.train.torch

    from benchmark.train import Hooks, run_group

    context = ray.train.get_context()
    torch.set_num_threads(max(1, int(config["cpus_per_worker"])))
    hooks = Hooks(
        log=_log,
        prepare_model=lambda model, **kw: ray.train.torch.prepare_model(model, parallel_strategy_kwargs=kw or None),
        prepare_loader=lambda loader: ray.train.torch.prepare_data_loader(loader, move_to_device=False),
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
    )
    results_queue = config["queue"]
    for name, spec in config["jobs"]:
        try:
            results = run_group(spec, hooks)
        except Exception as exc:  # noqa: BLE001 - report it and go on with the lane's other groups
            if hooks.is_main:
                results_queue.put((name, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
            continue
        if hooks.is_main:
            results_queue.put((name, results, None))


def _run_lane(jobs, *, results_queue, num_workers: int, gpus_per_worker: float, cpus_per_worker: float, storage: Path, name: str) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"jobs": jobs, "queue": results_queue, "cpus_per_worker": cpus_per_worker},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=str(Path(storage).resolve())),
    )
    trainer.fit()


def run_groups(
    jobs: list[tuple[str, dict[str, Any]]],
    *,
    num_workers: int,
    gpus_per_worker: float,
    cpus_per_worker: float | None,
    concurrency: int | None,
    storage: Path,
    on_done: Callable[[str, list[dict[str, Any]] | None, str | None], None],
) -> None:
    """Run (name, spec) jobs on Ray Train; ``on_done(name, results, error)`` is called in the
    driver as each job finishes. By default as many lanes run at once as the cluster fits."""
    from ray.util.queue import Queue

    resources = ray.cluster_resources()
    total_cpus = float(resources.get("CPU", 1))
    if cpus_per_worker is None:
        cpus_per_worker = 1.0 if gpus_per_worker else max(1.0, float(int(total_cpus // (2 * num_workers))))
    if concurrency is None:
        if gpus_per_worker:
            concurrency = int(resources.get("GPU", 0) // (gpus_per_worker * num_workers))
        else:
            concurrency = int(total_cpus // (cpus_per_worker * num_workers))
    concurrency = max(1, min(concurrency, len(jobs)))

    results_queue = Queue()
    lanes = [jobs[i::concurrency] for i in range(concurrency)]
    lane_errors: list[str] = []

    def lane(index: int) -> None:
        try:
            _run_lane(lanes[index], results_queue=results_queue, num_workers=num_workers, gpus_per_worker=gpus_per_worker,
                      cpus_per_worker=cpus_per_worker, storage=storage, name=f"lane{index}")
        except Exception as exc:  # noqa: BLE001 - the lane's unfinished groups are reported as failed below
            lane_errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            results_queue.put((DONE, None, None))

    threads = [threading.Thread(target=lane, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    reported, finished_lanes = set(), 0
    while finished_lanes < concurrency:
        try:
            name, results, error = results_queue.get(timeout=1.0)
        except queue_module.Empty:
            continue
        except Exception:  # ray.util.queue.Empty subclasses queue.Empty in recent Ray; be lenient
            continue
        if name == DONE:
            finished_lanes += 1
            continue
        reported.add(name)
        on_done(name, results, error)
    for thread in threads:
        thread.join()
    for name, _ in jobs:  # groups lost with a crashed lane (worker died, out of memory, ...)
        if name not in reported:
            on_done(name, None, lane_errors[0] if lane_errors else "the Ray Train job ended before this group ran")


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()
