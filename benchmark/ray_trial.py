"""The Ray Tune trial of a one-worker Job: a named Ray task that runs the Job in a pooled Ray worker.

Ray keeps a finished task's worker process and gives it the next task: the second Job on a lane starts with torch,
MONAI and the suite already imported (measured on a 2-core laptop: from the end of one Job to the first step of the
next ~4.5 s, about 2 s of it Tune's trial turnover, against ~8.6 s when each Job trained in its trial's own fresh
actor process; the default command runs 10 Jobs on 2 lanes). A Tune trial's actor is a new process every time, so
the trial only submits the task and waits: this module imports Ray and nothing heavy, and the trial's actor starts
in about half a second.

In the dashboard the unit is its task (Tasks view, by the unit's name, with its live log: loss every few steps,
validation scores) and its trial's actor (Actors view, same name). A worker that dies (killed) is replaced and the
task runs again (``max_retries``; one that Ray's memory monitor kills, under Ray's out-of-memory retry policy),
continuing from its stages' checkpoints; an error the Job raises itself is recorded at once
(``benchmark.ray_unit.run_unit``).
"""
from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


def _run_unit(name: str, job_json: str, **kwargs: Any) -> None:
    # Imported here, in the task's worker: the trial's actor that submits this task stays free of torch and MONAI
    # (``benchmark.ray_unit`` imports the training loops; it does not import this module).
    from benchmark.ray_unit import run_unit

    run_unit(name, job_json, **kwargs)


unit_task = ray.remote(_run_unit)


def job_trial(config: dict[str, Any], *, jobs: dict[str, str], results_queue, leases, cpus_per_worker: float, gpus_per_worker: float,
              max_failures: int = 0, progress_queue=None) -> None:
    """One planned Job (``config["name"]``) as its Ray task, holding the worker's CPUs / GPU; results reach the driver
    through ``results_queue``. A GPU Job gets a fresh process (``max_calls=1``): CUDA keeps the devices it saw first,
    and Ray may give a reused worker another GPU."""
    name = config["name"]
    options: dict[str, Any] = {"name": name, "num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker,
                               "max_retries": max_failures, "retry_exceptions": False,
                               # not in the trial's placement group (Tune captures child tasks there): it holds no CPU
                               "scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group=None)}
    if gpus_per_worker:
        options["max_calls"] = 1
    try:
        ray.get(unit_task.options(**options).remote(name, jobs[name], results_queue=results_queue, leases=leases,
                                                    gpus_per_worker=gpus_per_worker, progress_queue=progress_queue))
    except Exception as exc:  # noqa: BLE001 - its worker died more often than max_failures allows; the other Jobs go on
        results_queue.put((name, None, f"{type(exc).__name__}: {exc}"))
