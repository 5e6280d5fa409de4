"""A unit's side of Ray, in the process that trains it (a pooled Ray worker running a one-worker Job, a search
trial's actor, a Ray Train worker): the hooks it trains with (live metrics as Ray gauges for the dashboard, progress
to the driver's display, shared cache entries under the driver's leases) and ``run_unit``, one Job with its results
sent to the driver. The driver side (scheduling, search, cluster) is ``benchmark.ray_runner``; the Tune trial that
starts a one-worker Job is ``benchmark.ray_trial``."""
from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any, Callable

import ray

from benchmark.job import Job
from benchmark.train import Hooks, run_job


def log(message: str) -> None:
    """One line to this process's stdout (Ray forwards it to the driver's log, prefixed with the unit's name)."""
    # Not print(): Ray Train V2 patches print to also log, which shows every line twice.
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


# ---- who builds a shared cache entry: a lease of the driver's --------------------------------------------------
LEASE_SECONDS = 60.0  # a holder renews its lease every third of this; a dead holder's lease lapses after it


class LeaseBook:
    """The run's one record of who builds which shared entry (a pretraining two Jobs share, a split's evaluation
    network, a search configuration): an actor of the driver, so every node asks the same place and no two can
    disagree, whatever their disks share. A lease is renewed while its holder works and lapses when the holder dies
    (kill -9, node lost), so the next asker takes over; the same holder (a retried Job) gets its lease back at once."""

    def __init__(self) -> None:
        self.leases: dict[str, tuple[str, float]] = {}

    def acquire(self, key: str, holder: str, seconds: float) -> bool:
        now = time.monotonic()
        current = self.leases.get(key)
        if current is None or current[0] == holder or current[1] < now:
            self.leases[key] = (holder, now + seconds)
            return True
        return False

    def acquire_any(self, keys: list[str], holder: str, seconds: float) -> str | None:
        """The first of ``keys`` free (or already ``holder``'s), now leased to ``holder``; None when all are held."""
        return next((key for key in keys if self.acquire(key, holder, seconds)), None)

    def renew(self, key: str, holder: str, seconds: float) -> None:
        if self.leases.get(key, ("",))[0] == holder:
            self.leases[key] = (holder, time.monotonic() + seconds)

    def release(self, key: str, holder: str) -> None:
        if self.leases.get(key, ("",))[0] == holder:
            del self.leases[key]


KeyLeases = ray.remote(num_cpus=0)(LeaseBook)  # the book as an actor of the driver (``KeyLeases.remote()``)


class Lease:
    """``with Lease(leases, key, holder):`` waits for the lease of ``key`` (or, given several keys, of any one of
    them: a slot of a pool), keeps it renewed, and releases it."""

    def __init__(self, leases, key: str | list[str], holder: str, *, seconds: float = LEASE_SECONDS, poll_s: float = 1.0) -> None:
        self.keys = [key] if isinstance(key, str) else list(key)
        self.leases, self.key, self.holder, self.seconds, self.poll_s = leases, self.keys[0], holder, seconds, poll_s
        self._done = threading.Event()

    def __enter__(self) -> "Lease":
        while (key := ray.get(self.leases.acquire_any.remote(self.keys, self.holder, self.seconds))) is None:
            time.sleep(self.poll_s)
        self.key = key
        threading.Thread(target=self._renew, daemon=True).start()
        return self

    def _renew(self) -> None:
        while not self._done.wait(self.seconds / 3):
            self.leases.renew.remote(self.key, self.holder, self.seconds)

    def __exit__(self, *exc) -> None:
        self._done.set()
        ray.get(self.leases.release.remote(self.key, self.holder))


def claim(leases, holder: str) -> Callable[[str], Lease]:
    """``Hooks.claim`` of a unit: the driver's lease of a cache entry, held by the unit named ``holder``."""
    return lambda location: Lease(leases, location, holder)


def node() -> str:
    """This Ray node as ``cells.csv`` records it: its IP and the start of its node id (nodes may share an IP)."""
    context = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}"


# ---- the unit as the dashboard shows it ----------------------------------------------------------------------
GAUGES: dict[str, Any] = {}


def publish(unit: str, metrics: dict[str, Any]) -> None:
    """The unit's latest numbers as Ray gauges ``ray_medssl_unit_<key>{unit=<name>}`` (dashboard Metrics view,
    Prometheus), next to Tune's own record of them."""
    from ray.util.metrics import Gauge

    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            continue
        gauge = GAUGES.get(key)
        if gauge is None:
            gauge = GAUGES[key] = Gauge(f"medssl_unit_{key}", description=f"latest {key} of a medssl-bench unit", tag_keys=("unit",))
        gauge.set(float(value), tags={"unit": unit})


PROGRESS_EVERY_S = 1.0  # a unit's progress reaches the driver at most this often (and at every stage's start and end)


def progress_sender(progress_queue, name: str) -> Callable[[str, int, int, float | None], None]:
    """``Hooks.progress`` of a unit: its steps to the driver's progress display through ``progress_queue``, throttled."""
    last = {"stage": None, "at": 0.0}

    def send(stage: str, step: int, steps: int, loss: float | None) -> None:
        now = time.monotonic()
        if stage == last["stage"] and step not in (1, steps) and now - last["at"] < PROGRESS_EVERY_S:
            return
        last.update(stage=stage, at=now)
        progress_queue.put((name, stage, step, steps, loss))

    return send


def unit_hooks(name: str, *, gpus_per_worker: float, leases, progress_queue=None,
               also_report: Callable[[dict[str, Any]], None] | None = None) -> Hooks:
    """Hooks of a one-worker unit: live metrics to the dashboard's gauges (and to ``also_report``: a search trial's
    ``tune.report``, which its scheduler reads), progress to the driver, shared cache entries under the driver's
    ``leases``; as many threads as Ray gave the unit CPUs."""
    import torch

    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    device = torch.device("cuda") if gpus_per_worker and torch.cuda.is_available() else torch.device("cpu")

    def report(metrics: dict[str, Any]) -> None:
        publish(name, metrics)
        if also_report is not None:
            also_report(metrics)

    progress = progress_sender(progress_queue, name) if progress_queue is not None else Hooks.progress
    return Hooks(log=log, report=report, progress=progress, device=device, claim=claim(leases, name), node=node())


def run_unit(name: str, job_json: str, *, results_queue, leases, gpus_per_worker: float, progress_queue=None) -> None:
    """The Job ``job_json`` of the unit ``name``, run in this process; its results (or its error) go to the driver
    through ``results_queue``. An error the Job raises is recorded, not raised: running it again would raise it again."""
    try:
        results = run_job(Job.from_json(job_json), unit_hooks(name, gpus_per_worker=gpus_per_worker, leases=leases,
                                                              progress_queue=progress_queue))
    except Exception as exc:  # noqa: BLE001 - the driver records the Job as failed and the other units go on
        results_queue.put((name, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
        return
    results_queue.put((name, results, None))
