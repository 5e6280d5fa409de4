"""The driver's side of Ray: cluster start-up, Ray Tune scheduling of planned Jobs, DDP through Ray Train, and the
hyperparameter search (Ray Tune + Optuna). With ``benchmark.ray_trial`` (the Tune trial of a one-worker Job) and
``benchmark.ray_unit`` (what a unit runs with inside Ray) the only modules that import Ray.

Every planned Job (``benchmark.job``: one pretraining + its fine-tuning cells) and every search trial is a Ray
Tune trial that starts as soon as resources free up, so one long Job holds back nothing behind it. With one worker
(the laptop case) a Job's trial runs it as a named Ray task in a pooled worker that Ray reuses for the next Job (no
Ray Train start-up, and torch / MONAI load once per worker, not once per Job); a search trial runs its Job itself.
With ``--num-workers N > 1`` the trial holds no CPU and runs a Ray Train ``TorchTrainer`` of N DDP workers named
after it (the pattern of Ray's "Hyperparameter Tuning with Ray Tune" guide for Train V2; metrics reach Tune through
``TuneReportCallback``).

Where a user finds a unit in the Ray dashboard, by the name the run prints (method-backbone-task-s<seed>-f<fold>-...;
search trials: method-backbone-task-s<seed>-trial<k>):
- Tasks view (``/api/v0/tasks``), one worker: the Job's task, by the unit's name; its log holds the unit's live
  lines (loss every few steps, validation scores);
- Actors view (``/api/v0/actors``): the trial's actor shows the unit's name as its repr (a search trial's page shows
  its live log);
- Metrics view / Prometheus (``ray_medssl_unit_<metric>{unit=...}``): its latest train loss, validation score
  and step, as Ray gauges (exported every ~10 s while the unit runs and as long as its worker lives);
- Train view (``/api/train/v2/runs``), with ``--num-workers > 1``: the Train run of the same name.
Results stream back to the driver through a Ray queue as each Job finishes, so they are recorded cell by cell
even if a later Job fails or the run is interrupted; this also works on multi-node clusters where workers and
driver share no file system.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import re
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import ray
from ray.tune.stopper import Stopper

from benchmark import storage as storage_uri
from benchmark.job import Job
from benchmark.plan import apply_params
from benchmark.ray_trial import job_trial
from benchmark.ray_unit import KeyLeases, Lease, claim, log, node, progress_sender, publish, unit_hooks
from benchmark.train import Hooks, local_claim, run_job

# Ray Train V2, and its state tracking (else the dashboard's Train view stays empty), in every process of the run.
_STARTED_HERE = False  # start_ray connected this process (release() disconnects it again)
_TRAIN_ENV = {"RAY_TRAIN_V2_ENABLED": "1", "RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}


class ClusterUnreachable(RuntimeError):
    """``--address`` names a Ray cluster that does not answer (raised within seconds, not after GCS time-outs)."""


def start_ray(address: str | None, *, dashboard: bool = True, connect_timeout_s: float = 5.0) -> str:
    """Join ``address`` ("auto", "HOST:PORT" or "ray://HOST:PORT"), or start a NEW embedded local cluster.

    Without an address the run never joins whatever local cluster Ray has on record (``ray.init()``
    would, and hangs for minutes on GCS time-outs when that cluster has died: a ``ray start`` ended
    without ``ray stop`` leaves its address behind); ``address="local"`` always starts a fresh one.
    A given address is probed first: a cluster that does not answer is one clear error within seconds.
    Returns the dashboard URL ("" when none).
    """
    global _STARTED_HERE
    if ray.is_initialized():
        return ""
    for key, value in _TRAIN_ENV.items():  # an embedded cluster's workers inherit them
        os.environ.setdefault(key, value)
    kwargs: dict[str, Any] = {"log_to_driver": True, "logging_level": "ERROR"}
    if address:
        _probe(address, timeout_s=connect_timeout_s)
        # a running cluster's workers do not inherit this process's environment: the Train runs inside trials need it
        context = ray.init(address=address, runtime_env={"env_vars": {k: os.environ[k] for k in _TRAIN_ENV}}, **kwargs)
    else:
        context = ray.init(address="local", include_dashboard=dashboard, **kwargs)
    _STARTED_HERE = True
    url = getattr(context, "dashboard_url", "") or ""
    return f"http://{url}" if url and not url.startswith("http") else url


def is_started() -> bool:
    return ray.is_initialized()


def cluster_gpus() -> float:
    """The GPUs of the Ray cluster this process is connected to."""
    return float(ray.cluster_resources().get("GPU", 0.0))


def dashboard_token_hint() -> str:
    """How to open the dashboard: Ray 2.60 asks for the token it keeps in ~/.ray/auth_token."""
    token = Path.home() / ".ray" / "auth_token"
    return f"the dashboard asks for a token: paste the content of {token}" if token.exists() else ""


def _probe(address: str, *, timeout_s: float) -> None:
    """TCP-connect to the cluster's GCS (or Ray Client server) before ``ray.init`` waits on it for minutes."""
    import socket

    target = address
    if address == "auto":
        recorded = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        target = os.environ.get("RAY_ADDRESS") or (recorded.read_text().strip() if recorded.exists() else "")
        if not target:
            raise ClusterUnreachable("--address auto: no running Ray cluster is recorded on this machine (start one with "
                                     "'ray start --head', or omit --address to run on an embedded local cluster)")
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnreachable(f"--address {address!r}: expected 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterUnreachable(f"--address {address!r}: the Ray cluster at {host}:{port} does not answer ({exc}); "
                                 "if it was stopped, run 'ray stop' to clear it, or omit --address to run on an embedded local cluster") from None


def _ray_storage(location: str) -> dict[str, Any]:
    """``storage_path`` (and ``storage_filesystem`` for a URI) of Ray Train / Tune for the storage ``location``."""
    if storage_uri.local_path(location) is not None:
        return {"storage_path": str(storage_uri.local_path(location))}
    filesystem, path = storage_uri.resolve(location)
    return {"storage_path": path, "storage_filesystem": filesystem}


# ---- resources --------------------------------------------------------------------------------------------
# Tune refuses an all-zero request, hence one byte of the ``memory`` resource.
NO_RESOURCES = {"cpu": 0.0, "gpu": 0.0, "memory": 1.0}


def trial_resources(*, num_workers: int, cpus_per_worker: float, gpus_per_worker: float) -> dict[str, float]:
    """What one search trial holds. One worker: the worker's CPUs / GPUs, the trial trains itself. Several: the trial
    only drives a Ray Train run whose workers hold the CPUs / GPUs, so the trial itself holds none (holding a CPU
    would starve the workers of a small cluster: 1 + 2 workers do not fit 2 cores). A planned Job's trial never
    trains itself (``run_jobs``): it holds ``NO_RESOURCES``."""
    if num_workers == 1:
        return {"cpu": cpus_per_worker, "gpu": gpus_per_worker}
    return dict(NO_RESOURCES)


def default_concurrency(*, cluster: dict[str, float], num_workers: int, cpus_per_worker: float, gpus_per_worker: float) -> int:
    """How many trials fit the cluster at once (at least one): with several workers Tune cannot see it from the
    trial's own (empty) request, so trials are capped here and no Train run waits on another's workers."""
    if gpus_per_worker:
        return max(1, int(cluster.get("GPU", 0) // (gpus_per_worker * num_workers)))
    return max(1, int(cluster.get("CPU", 1) // (cpus_per_worker * num_workers)))


def default_cpus_per_worker(*, cluster: dict[str, float], num_workers: int, gpus_per_worker: float) -> float:
    """Default CPUs per worker: 1 with GPUs, else half the cluster's CPUs per Job (two Jobs at once)."""
    return 1.0 if gpus_per_worker else max(1.0, float(int(float(cluster.get("CPU", 1)) // (2 * num_workers))))


def _unit_trainable(function: Callable, *, name: str, resources: dict[str, float], **parameters) -> type:
    """``function`` as a Tune trainable named ``name`` whose actor's repr is its trial's name: the dashboard's Actors
    view (and the Tasks view, '<name>.train') lists every unit by name instead of one anonymous class per run.
    Tune registers trainables by class name in a registry global to the Ray job, so Tuners fitting at once in one
    driver (the searches) need a name each: with one shared name, the last registered trainable ran every Tuner's
    trials (measured: the second experiment's trials ran the first's Job)."""
    from ray import tune
    from ray.tune.trainable.function_trainable import wrap_function

    base = wrap_function(tune.with_resources(tune.with_parameters(function, **parameters), resources))

    class MedsslUnit(base):
        def __repr__(self) -> str:  # Ray records it once the actor is built, when the trial's name is known
            return self.trial_name

    # "<name>_MedsslUnit": the dashboard's Actors view filters every unit of every experiment by the common suffix
    MedsslUnit.__name__ = MedsslUnit.__qualname__ = f"{_dirname(name)}_MedsslUnit"
    return MedsslUnit


def _registered(trainable: type) -> str:
    """``trainable`` registered with Tune here, its name returned for the Tuner: Tune's registry is not thread-safe
    (two Tuners registering in their ``fit`` threads at once: "dictionary changed size during iteration")."""
    from ray.tune import register_trainable

    register_trainable(trainable.__name__, trainable, warn=False)
    return trainable.__name__


def _train_run(name: str, loop_config: dict[str, Any], *, num_workers: int, cpus_per_worker: float, gpus_per_worker: float,
               storage: str, max_failures: int = 0) -> None:
    """A Ray Train ``TorchTrainer`` of ``num_workers`` DDP workers running ``_train_loop``, named ``name`` (the Train view
    lists it), from inside a Tune trial: its reports reach the trial (the scheduler, Tune's records) through
    ``TuneReportCallback``. A lost worker restarts the worker group up to ``max_failures`` times; the restarted loop
    continues every stage from its checkpoint (``benchmark.checkpoints``)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    resources = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={**loop_config, "name": name, "cpus_per_worker": cpus_per_worker},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources),
        run_config=RunConfig(name=name, **_ray_storage(storage_uri.join(storage, "train")), callbacks=[TuneReportCallback()],
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    trainer.fit()


def _train_loop(config: dict[str, Any]) -> None:
    """Runs inside every Ray Train worker (DDP): plain-PyTorch ``run_job`` of one Job (``config["search"]``: a search
    trial, validation only)."""
    import torch
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    torch.set_num_threads(max(1, int(config["cpus_per_worker"])))
    rank, name = context.get_world_rank(), config["name"]

    def report(metrics: dict[str, Any]) -> None:
        if rank == 0:
            publish(name, metrics)
        ray.train.report(metrics)  # every worker evaluates, so every worker reaches this barrier

    hooks = Hooks(
        log=log,
        report=report,
        prepare_model=lambda model, **kw: ray.train.torch.prepare_model(model, parallel_strategy_kwargs=kw or None),
        prepare_loader=lambda loader: ray.train.torch.prepare_data_loader(loader, move_to_device=False),
        rank=rank,
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
        claim=claim(config["leases"], name),
        node=node(),
    )
    if config.get("progress") is not None:
        hooks.progress = progress_sender(config["progress"], name)
    job = Job.from_json(config["job"])
    if config.get("search"):  # the trial reports the final step itself, once it recorded the score (a Train Result
        best = _search_job(job, hooks)  # holds no metrics without a checkpoint: the score goes through storage)
        if hooks.is_main:
            storage_uri.write_bytes(config["score_path"], json.dumps({"best_validation_score": best, "world_size": hooks.world_size}).encode())
        return
    try:
        results = run_job(job, hooks)
    except torch.distributed.DistError:  # a peer worker was lost: Ray Train restarts the group (FailureConfig), which resumes
        raise
    except Exception as exc:  # noqa: BLE001 - recorded as this Job's failure; the other Jobs go on
        if hooks.is_main:
            config["queue"].put((name, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
        return
    if hooks.is_main:
        config["queue"].put((name, results, None))


# ---- planned Jobs ---------------------------------------------------------------------------------------------
def _ddp_job_trial(config: dict[str, Any], *, jobs: dict[str, str], results_queue, leases, num_workers: int, cpus_per_worker: float,
                   gpus_per_worker: float, storage: str, max_failures: int = 0, progress_queue=None) -> None:
    """One planned Job as one Ray Tune trial that runs a Ray Train DDP run named after the Job (``--num-workers > 1``;
    one worker: ``benchmark.ray_trial.job_trial``). Results go to the driver through ``results_queue`` as the Job ends."""
    name = config["name"]
    try:
        _train_run(name, {"job": jobs[name], "queue": results_queue, "leases": leases, "progress": progress_queue}, num_workers=num_workers,
                   cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, storage=storage, max_failures=max_failures)
    except Exception as exc:  # noqa: BLE001 - a Train run that died (worker lost, ...); the other trials go on
        results_queue.put((name, None, f"{type(exc).__name__}: {exc}"))


def job_slots(n_jobs: int, *, num_workers: int, gpus_per_worker: float, cpus_per_worker: float | None,
              concurrency: int | None) -> tuple[float, int]:
    """(CPUs per worker, Jobs at once) of ``run_jobs`` on the connected cluster: the given values, else the defaults."""
    cluster = ray.cluster_resources()
    if cpus_per_worker is None:
        cpus_per_worker = default_cpus_per_worker(cluster=cluster, num_workers=num_workers, gpus_per_worker=gpus_per_worker)
    if concurrency is None:
        concurrency = default_concurrency(cluster=cluster, num_workers=num_workers, cpus_per_worker=cpus_per_worker,
                                          gpus_per_worker=gpus_per_worker)
    return cpus_per_worker, max(1, min(concurrency, n_jobs))


def run_jobs(
    jobs: list[tuple[str, str]],
    *,
    num_workers: int,
    gpus_per_worker: float,
    cpus_per_worker: float | None,
    concurrency: int | None,
    storage: str,
    on_done: Callable[[str, list[dict[str, Any]] | None, str | None], None],
    max_failures: int = 2,
    on_progress: Callable[[str, str, int, int, float | None], None] | None = None,
) -> None:
    """Run (name, Job JSON) pairs as Ray Tune trials named after them; ``on_done(name, results, error)`` is called in
    the driver as each Job finishes. Each Job starts when resources free up (a long Job holds back nothing behind
    it); by default as many run at once as the cluster fits. A Job whose worker dies (killed, node lost) is retried up
    to ``max_failures`` times (its Ray task's retries with one worker, Ray Train's for a DDP Job, Tune's when the
    trial's own actor is lost; a worker killed by Ray's memory monitor follows Ray's out-of-memory retry policy) and
    continues from its stages' checkpoints; an error the Job raises itself is recorded at once (running it again would raise it again).
    ``on_progress(name, stage, step, steps, loss)``: each running Job's steps, about once a second (``Hooks.progress``)."""
    from ray import tune
    from ray.util.queue import Queue

    cpus_per_worker, concurrency = job_slots(len(jobs), num_workers=num_workers, gpus_per_worker=gpus_per_worker,
                                             cpus_per_worker=cpus_per_worker, concurrency=concurrency)

    results_queue, leases = Queue(), KeyLeases.remote()
    progress_queue = Queue() if on_progress is not None else None
    _INTERRUPTED.clear()
    shared = {"jobs": dict(jobs), "results_queue": results_queue, "leases": leases, "cpus_per_worker": cpus_per_worker,
              "gpus_per_worker": gpus_per_worker, "max_failures": max_failures, "progress_queue": progress_queue}
    # The trial never trains itself: its Ray task (one worker) or its Train run's workers hold the CPUs / GPUs.
    if num_workers == 1:
        trainable = _unit_trainable(job_trial, name="jobs", resources=NO_RESOURCES, **shared)
    else:
        trainable = _unit_trainable(_ddp_job_trial, name="jobs", resources=NO_RESOURCES, num_workers=num_workers, storage=storage, **shared)
    tuner = tune.Tuner(
        trainable,
        param_space={"name": tune.grid_search([name for name, _ in jobs])},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, trial_name_creator=lambda t: t.config["name"],
                                    trial_dirname_creator=lambda t: _dirname(t.config["name"])),
        run_config=tune.RunConfig(name=f"jobs-{time.strftime('%Y%m%d-%H%M%S')}", **_ray_storage(storage), verbose=0,
                                  stop=_StopAll(),
                                  # a DDP Job is retried by Ray Train (its workers), a one-worker Job by Ray (its task); the
                                  # trial's own actor (lost with its node) by Tune, except a DDP one: that would multiply the attempts
                                  failure_config=tune.FailureConfig(max_failures=0 if num_workers > 1 else max_failures)),
    )
    failure: list[str] = []

    def fit() -> None:
        try:
            tuner.fit()
        except Exception as exc:  # noqa: BLE001 - the unreported Jobs are recorded as failed below
            failure.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    reported: set[str] = set()
    try:
        _collect(results_queue, thread, reported, on_done, progress_queue=progress_queue, on_progress=on_progress)
    except KeyboardInterrupt:  # Ctrl-C: Tune (in its thread) stops the trials and returns before the driver exits; left
        _INTERRUPTED.set()      # running, it would call Ray after the exit's shutdown and start a cluster again
        _wait_for([thread])  # a second Ctrl-C ends the wait
        raise
    thread.join()
    results_queue.shutdown(force=True)  # every trial has ended: its actor would otherwise outlive the call (one per run_jobs)
    if progress_queue is not None:
        progress_queue.shutdown(force=True)
    ray.kill(leases)
    for name, _ in jobs:  # Jobs lost with a crashed trial (worker died, out of memory, ...)
        if name not in reported:
            on_done(name, None, failure[0] if failure else "the Ray Tune trial ended before this Job reported")


_INTERRUPTED = threading.Event()  # set by the driver on Ctrl-C: every experiment of this process stops (Tune saves it)


class _StopAll(Stopper):
    """A Tune stopper (``RunConfig(stop=...)``) that ends ``run_jobs``' experiment once ``_INTERRUPTED`` is set
    (Ctrl-C). Its experiment is never restored (the next run plans the unfinished Jobs afresh and their stages resume
    from their checkpoints), so that ``stop_all`` marks the trials terminated does no harm there; the searches, which
    are restored, stop through ``_fit_together`` instead."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return _INTERRUPTED.is_set()


def _collect(results_queue, thread: threading.Thread, reported: set[str], on_done, *, progress_queue=None, on_progress=None) -> None:
    """Hand every Job's results to ``on_done`` as they arrive, until Tune is done and the queue is empty; the Jobs'
    progress events to ``on_progress`` on the way."""
    while True:
        if progress_queue is not None:
            waiting = progress_queue.qsize()
            for event in progress_queue.get_nowait_batch(waiting) if waiting else ():
                on_progress(*event)
        # Polled, not a blocking get: a get waiting in the queue actor when Ctrl-C stops the driver ends in an
        # exception nobody reads, which Ray prints as a stack trace after the "interrupted" line.
        if results_queue.empty():
            if not thread.is_alive() and results_queue.empty():
                return
            time.sleep(0.5)
            continue
        name, results, error = results_queue.get_nowait()
        if name in reported:  # a retried DDP Job whose first attempt's rank 0 had already reported
            continue
        reported.add(name)
        on_done(name, results, error)


def _dirname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", name)[:120]


def shutdown() -> None:
    global _STARTED_HERE
    if ray.is_initialized():
        ray.shutdown()
    _STARTED_HERE = False


def release() -> None:
    """Disconnect from (and, for an embedded cluster, stop) the Ray cluster ``start_ray`` connected to; a cluster
    the caller had initialised itself stays. Done while the run still captures what the process prints: the
    workers' last log lines, which Ray forwards asynchronously, would otherwise reach the console after the run."""
    if _STARTED_HERE:
        shutdown()


# ---- hyperparameter search: Ray Tune + Optuna ---------------------------------------------------------------
def _search_job(job, hooks) -> float:
    """Pretrain (or reuse that pretext configuration's checkpoint) and fine-tune the tuning fraction with model
    selection on the validation cases, reporting the validation score as it goes (the scheduler stops poor trials
    early); no test case is loaded. Returns the best validation score."""
    report = hooks.report

    def report_defined(metrics: dict[str, Any]) -> None:
        score = metrics["validation_score"]
        report({**metrics, "validation_score": score if score == score else -1.0})  # NaN (undefined) -> worst

    results = run_job(job, dataclasses.replace(hooks, report=report_defined), evaluate_test=False)
    return max((r.validation_score for r in results if r.validation_score is not None), default=-1.0)


def params_key(params: dict[str, Any]) -> str:
    """The identity of a proposed configuration (what the trial applies, derived values included)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def evaluate_once(params: dict[str, Any], *, folder: str | Path, trial: str, evaluate: Callable[[], float],
                  claim: Callable[[str], Any] = local_claim) -> tuple[float, str | None]:
    """``(validation score, None)`` after ``evaluate()``, or ``(its score, that trial)`` when a trial of this experiment
    already finished the same configuration: TPE's random start-up trials can propose a configuration twice on a
    small categorical space (CSI), and it is not trained twice. A concurrent trial with the same configuration waits
    for the first (``claim`` of the configuration's record: the driver's lease under Ray); the records live in
    ``folder`` on the storage (a path or URI); a trial stopped early or failed leaves no record, so its
    configuration can be evaluated again."""
    record = storage_uri.join(folder, f"{params_key(params)}.json")
    with claim(record):
        if storage_uri.exists(record):
            finished = json.loads(storage_uri.read_bytes(record))
            return float(finished["validation_score"]), str(finished["trial"])
        score = evaluate()
        storage_uri.write_bytes(record, json.dumps({"trial": trial, "params": params, "validation_score": score}, sort_keys=True,
                                                   default=str).encode())
        return score, None


def _search_trial(config: dict[str, Any], *, base_job: str, budget: int, finished: str, leases, num_workers: int, cpus_per_worker: float,
                  gpus_per_worker: float, storage: str, train_slots: int = 0) -> None:
    """One search trial: the Job with the sampled parameters, evaluated here (one worker) or by a Ray Train DDP run
    named after the trial (several) once one of the run's ``train_slots`` is free (the experiments of a run share
    them: no Train run waits for workers another holds), unless the experiment already evaluated that configuration."""
    from ray import tune

    params = config["tuned"]  # what the space returned (derived values included), not Optuna's raw suggestions
    job = apply_params(Job.from_json(base_job), params, search_budget=budget)
    name = tune.get_context().get_trial_name()

    world = {"size": 1}  # as the workers saw it
    trial = tune.get_context().get_trial_id()

    def evaluate() -> float:
        if num_workers == 1:
            return _search_job(job, unit_hooks(name, gpus_per_worker=gpus_per_worker, leases=leases, also_report=tune.report))
        score_path = storage_uri.join(finished, f"{trial}.score.json")
        with Lease(leases, [f"train-slot-{slot}" for slot in range(max(1, train_slots))], name):
            _train_run(name, {"job": job.to_json(), "search": True, "score_path": score_path, "leases": leases}, num_workers=num_workers,
                       cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, storage=storage)
        last = json.loads(storage_uri.read_bytes(score_path))
        world["size"] = int(last["world_size"])
        return float(last["best_validation_score"])

    score, repeats = evaluate_once(params, folder=finished, trial=trial, evaluate=evaluate, claim=claim(leases, name))
    final = {"step": job.finetune_steps * job.finetune_rounds + 1, "validation_score": score, "best_validation_score": score, "done": True,
             "world_size": world["size"]}
    if repeats is not None and repeats != trial:  # (== trial: this trial, restarted after an interruption that came after its evaluation)
        log(f"[medssl-bench] {name}: same configuration as finished trial {repeats}; its validation score {score:.4f} is reused")
        final["duplicate_of"] = repeats
    # last, and only after the record is written: at this step the scheduler ends the trial (its actor is stopped)
    tune.report(final)


def run_search(
    experiments: list[dict[str, Any]],
    *,
    trials: int,
    seed: int,
    max_concurrent: int | None,
    num_workers: int,
    cpus_per_worker: float | None,
    gpus_per_worker: float,
    storage: str,
) -> list[dict[str, Any]]:
    """One Ray Tune experiment per entry of ``experiments`` ({"name", "job": base Job JSON, "space": define-by-run
    function returning {"tuned": the parameters to apply}, "max_step", "seed"}), all at once on the cluster, each with
    its own seeded Optuna TPE proposing ``trials`` configurations (at most ``max_concurrent`` running) and its own ASHA
    scheduler stopping poor ones early on the validation score;
    each trial trains with ``num_workers`` workers (several: DDP through Ray Train). An interrupted experiment
    continues from its folder under ``storage`` (a path or URI; finished trials are not repeated); an interruption
    (Ctrl-C) raises KeyboardInterrupt once Tune has saved the experiments. Returns one row per trial, experiment by
    experiment: experiment, trial, params, validation_score, status (done, stopped early, error, duplicate),
    duplicate_of (the trial it repeats), seconds (and ``suggested``: Optuna's raw suggestions the parameters were
    derived from)."""
    cluster = ray.cluster_resources()
    if cpus_per_worker is None:
        cpus_per_worker = 1.0 if num_workers == 1 else default_cpus_per_worker(cluster=cluster, num_workers=num_workers,
                                                                                 gpus_per_worker=gpus_per_worker)
    train_slots = 0
    if num_workers > 1:  # Tune cannot see a DDP trial's workers: the experiments share this many Train runs at once
        train_slots = default_concurrency(cluster=cluster, num_workers=num_workers, cpus_per_worker=cpus_per_worker,
                                          gpus_per_worker=gpus_per_worker)
        max_concurrent = max_concurrent or train_slots
    leases = KeyLeases.remote()
    _INTERRUPTED.clear()
    try:
        tuners = [_search_tuner(exp, trials=trials, seed=seed, max_concurrent=max_concurrent, num_workers=num_workers,
                                cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, storage=storage, leases=leases,
                                train_slots=train_slots)
                  for exp in experiments]
        grids = _fit_together(tuners)
    finally:
        ray.kill(leases)
    unfinished = [f"{exp['name']} ({grid.num_terminated}/{trials})" for exp, grid in zip(experiments, grids)
                  if grid.num_terminated + grid.num_errors < trials]
    if unfinished:  # Ctrl-C: every Tuner stopped, saved its experiment and returned
        log(f"[medssl-bench] search interrupted with {len(unfinished)} experiment(s) unfinished (trials finished): "
             f"{', '.join(unfinished)}; they continue from there")
        raise KeyboardInterrupt
    return [row for exp, grid in zip(experiments, grids) for row in _trial_rows(exp["name"], grid)]


def _fit_together(tuners: list) -> list:
    """Fit every Tuner at once, each in its own thread (its controller asks Ray for its trials' resources, so the
    experiments share the cluster: a trial starts wherever and whenever any experiment's trial frees room), and return
    their result grids in order. A Tuner's own error is raised after the others end.

    Ctrl-C: Tune installs its stop-and-save handler only in the main thread; in a thread its loop watches an event
    nobody sets. Each loop here watches ``_INTERRUPTED`` instead (set by the driver on Ctrl-C), so every experiment
    stops as Tune stops on Ctrl-C: trials left running stay unfinished in the saved experiment, and ``Tuner.restore``
    runs them and the trials not yet proposed. (A ``Stopper``'s ``stop_all`` would not do: it marks the searcher
    finished and the running trials terminated, so a restored search would propose nothing more.) On a Ray whose Tune
    lacks that hook the experiments run one after another in the main thread, Tune's own handler stopping them."""
    loop = importlib.import_module("ray.tune.tune")
    if not callable(getattr(loop, "_setup_signal_catching", None)):
        return [tuner.fit() for tuner in tuners]
    grids: list = [None] * len(tuners)
    errors: list[BaseException] = []

    def fit(index: int) -> None:
        try:
            grids[index] = tuners[index].fit()
        except BaseException as exc:  # noqa: BLE001 - raised in the driver once every experiment has returned
            errors.append(exc)
            _INTERRUPTED.set()  # the run cannot finish: stop the other experiments too (they are saved and resume)

    tune_handler, loop._setup_signal_catching = loop._setup_signal_catching, lambda: _INTERRUPTED
    try:
        threads = [threading.Thread(target=fit, args=(index,), daemon=True) for index in range(len(tuners))]
        for thread in threads:
            thread.start()
        try:
            _wait_for(threads)
        except KeyboardInterrupt:  # as in run_jobs: Tune, left running, would call Ray after the exit's shutdown
            _INTERRUPTED.set()
            _wait_for(threads)  # a second Ctrl-C ends the wait
    finally:
        loop._setup_signal_catching = tune_handler
    if errors:
        raise errors[0]
    return grids


def _wait_for(threads: list[threading.Thread]) -> None:
    """Until every thread has ended. Polled with sleeps, not Thread.join: a join that Ctrl-C interrupts can leave its
    thread reported dead while it runs (CPython, before 3.13), and its result would be read before it is there."""
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.5)


def _search_tuner(exp: dict[str, Any], *, trials: int, seed: int, max_concurrent: int | None, num_workers: int, cpus_per_worker: float,
                  gpus_per_worker: float, storage: str, leases, train_slots: int = 0):
    """The Tuner of one search experiment: restored from its folder when interrupted earlier."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch
    import optuna

    where = _ray_storage(storage)
    path = storage_uri.join(storage, exp["name"])
    trainable = _unit_trainable(_search_trial, name=f"search_{exp['name']}", resources=trial_resources(num_workers=num_workers, cpus_per_worker=cpus_per_worker,
                                                                         gpus_per_worker=gpus_per_worker),
                                base_job=exp["job"], budget=trials, finished=storage_uri.join(storage, exp["name"] + ".finished"), leases=leases,
                                num_workers=num_workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, storage=storage,
                                train_slots=train_slots)
    trainable = _registered(trainable)  # _fit_together fits every experiment's Tuner in its own thread
    restore_at, filesystem = f"{where['storage_path']}/{exp['name']}", where.get("storage_filesystem")
    if tune.Tuner.can_restore(restore_at, storage_filesystem=filesystem):
        log(f"[medssl-bench] search {exp['name']}: continuing the interrupted experiment in {path}")
        return tune.Tuner.restore(restore_at, trainable=trainable, resume_errored=True, storage_filesystem=filesystem)
    searcher = OptunaSearch(space=exp["space"], metric="validation_score", mode="max", sampler=optuna.samplers.TPESampler(seed=seed))
    scheduler = ASHAScheduler(time_attr="step", max_t=exp["max_step"], grace_period=max(1, exp["max_step"] // 4))
    prefix = f"{exp['name']}-s{exp.get('seed', 0)}-trial"
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(metric="validation_score", mode="max", search_alg=searcher, scheduler=scheduler,
                                    num_samples=trials, max_concurrent_trials=max_concurrent,
                                    trial_name_creator=lambda t, p=prefix: p + _trial_number(t),
                                    trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(name=exp["name"], **where, verbose=0),
    )


def _trial_number(trial) -> str:
    """The trial's 0-based number (its row in tuning.csv): the searcher's tag starts with its 1-based count, "3_..."."""
    head = trial.experiment_tag.split("_")[0]
    return str(int(head) - 1) if head.isdigit() else trial.trial_id


def _trial_rows(experiment: str, grid) -> list[dict[str, Any]]:
    """One row per trial of a finished experiment, in the order the trials were created (Optuna's proposals)."""
    results = list(grid)
    number = {(r.metrics or {}).get("trial_id"): index for index, r in enumerate(results)}
    rows = []
    for index, result in enumerate(results):
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        best = float(history["validation_score"].max()) if history is not None and "validation_score" in history else float("nan")
        config = dict(result.config or {})
        params = config.pop("tuned", {})
        repeats = metrics.get("duplicate_of")
        # (our last report carries best_validation_score; Tune's own "done" is true for an early-stopped trial too)
        status = ("error" if result.error else "duplicate" if repeats else "done" if "best_validation_score" in metrics else "stopped early")
        rows.append({"experiment": experiment, "trial": index, "params": params, "suggested": config, "validation_score": best,
                     "error": str(result.error).strip().splitlines()[-1][:300] if result.error else "", "status": status,
                     "duplicate_of": number.get(repeats, "") if repeats else "",
                     "seconds": float(metrics.get("time_total_s", float("nan")))})
    return rows
