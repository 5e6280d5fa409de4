"""The only module that imports Ray: cluster start-up, Ray Tune scheduling of planned Jobs, DDP through Ray
Train, and the hyperparameter search (Ray Tune + Optuna).

Every planned Job (``benchmark.job``: one pretraining + its fine-tuning cells) starts as soon as resources free
up, so one long Job holds back nothing behind it. With one worker per Job (the laptop case) each Job is a Ray
Tune function trial named after it (method-backbone-task-seed-fold-...): a few seconds to start, no Ray Train
start-up. With ``--num-workers N`` each Job is a Ray Train ``TorchTrainer`` with N DDP workers, named after the
Job (the dashboard's Train view lists it), started by a pool of ``concurrency`` driver threads.
Results stream back to the driver through a Ray queue as each Job finishes, so they are recorded cell by cell
even if a later Job fails or the run is interrupted; this also works on multi-node clusters where workers and
driver share no file system.
"""
from __future__ import annotations

import os
import queue as queue_module
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import ray



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
    if ray.is_initialized():
        return ""
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")  # else the dashboard's Train view stays empty
    kwargs: dict[str, Any] = {"log_to_driver": True, "logging_level": "ERROR"}
    if address:
        _probe(address, timeout_s=connect_timeout_s)
        context = ray.init(address=address, **kwargs)
    else:
        context = ray.init(address="local", include_dashboard=dashboard, **kwargs)
    url = getattr(context, "dashboard_url", "") or ""
    return f"http://{url}" if url and not url.startswith("http") else url


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


def _log(message: str) -> None:
    # Not print(): Ray Train V2 patches print to also log, which shows every line twice.
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _train_loop(config: dict[str, Any]) -> None:
    """Runs inside every Ray Train worker (DDP): plain-PyTorch ``run_job`` for each Job given."""
    import torch
    import ray.train
    import ray.train.torch

    from benchmark.job import Job
    from benchmark.train import Hooks, run_job

    context = ray.train.get_context()
    torch.set_num_threads(max(1, int(config["cpus_per_worker"])))
    hooks = Hooks(
        log=_log,
        # live validation score and loss in the Train run (every worker evaluates, so every worker reaches this barrier)
        report=lambda metrics: ray.train.report(metrics),
        prepare_model=lambda model, **kw: ray.train.torch.prepare_model(model, parallel_strategy_kwargs=kw or None),
        prepare_loader=lambda loader: ray.train.torch.prepare_data_loader(loader, move_to_device=False),
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
    )
    results_queue = config["queue"]
    for name, job_json in config["jobs"]:
        try:
            results = run_job(Job.from_json(job_json), hooks)
        except Exception as exc:  # noqa: BLE001 - report it and go on with the other Jobs
            if hooks.is_main:
                results_queue.put((name, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
            continue
        if hooks.is_main:
            results_queue.put((name, results, None))


def _run_ddp(jobs, *, results_queue, num_workers: int, gpus_per_worker: float, cpus_per_worker: float, storage: Path, name: str) -> None:
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


def _job_trial(config: dict[str, Any], *, jobs: dict[str, str], results_queue, cpus_per_worker: float, gpus_per_worker: float) -> None:
    """One planned Job as one Ray Tune function trial (a few seconds to start, no Ray Train start-up). Results go to
    the driver through ``results_queue`` as the Job ends; live loss and validation score are reported to Tune."""
    import torch
    from ray import tune

    from benchmark.job import Job
    from benchmark.train import Hooks, run_job

    name = config["name"]
    torch.set_num_threads(max(1, int(cpus_per_worker)))
    device = torch.device("cuda") if gpus_per_worker and torch.cuda.is_available() else torch.device("cpu")
    hooks = Hooks(log=_log, report=lambda metrics: tune.report({**metrics, "job": name}), device=device)
    try:
        results = run_job(Job.from_json(jobs[name]), hooks)
    except Exception as exc:  # noqa: BLE001 - the driver records the Job as failed and the other trials go on
        results_queue.put((name, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
        return
    results_queue.put((name, results, None))


def _tune_executor(jobs: list[tuple[str, str]], *, results_queue, concurrency: int, cpus_per_worker: float, gpus_per_worker: float,
                   storage: Path) -> Callable[[], None]:
    """One worker per Job: every Job is a Ray Tune trial named after it; Tune starts the next one wherever resources free up."""
    from ray import tune

    trial = tune.with_parameters(_job_trial, jobs=dict(jobs), results_queue=results_queue, cpus_per_worker=cpus_per_worker,
                                 gpus_per_worker=gpus_per_worker)
    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": cpus_per_worker, "gpu": gpus_per_worker}),
        param_space={"name": tune.grid_search([name for name, _ in jobs])},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, trial_name_creator=lambda t: t.config["name"],
                                    trial_dirname_creator=lambda t: re.sub(r"[^A-Za-z0-9_.=-]+", "-", t.config["name"])[:120]),
        run_config=tune.RunConfig(name=f"jobs-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(Path(storage).resolve()), verbose=0),
    )
    return lambda: tuner.fit()


def _ddp_executor(jobs: list[tuple[str, str]], *, results_queue, concurrency: int, num_workers: int, cpus_per_worker: float,
                  gpus_per_worker: float, storage: Path) -> Callable[[], None]:
    """Several workers per Job: ``concurrency`` threads each take the next Job as they free up and run it as a Ray Train
    ``TorchTrainer`` (DDP) named after the Job, which the dashboard's Train view lists. (Not nested in a Tune trial:
    the trial's own CPU would be counted on top of the Train workers and starve a small cluster.)"""
    pending = queue_module.Queue()
    for job in jobs:
        pending.put(job)

    def worker() -> None:
        while True:
            try:
                name, job_json = pending.get_nowait()
            except queue_module.Empty:
                return
            try:
                _run_ddp([(name, job_json)], results_queue=results_queue, num_workers=num_workers, gpus_per_worker=gpus_per_worker,
                         cpus_per_worker=cpus_per_worker, storage=storage, name=name)
            except Exception as exc:  # noqa: BLE001 - recorded as this Job's failure; the other Jobs go on
                results_queue.put((name, None, f"{type(exc).__name__}: {exc}"))

    def run() -> None:
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return run


def run_jobs(
    jobs: list[tuple[str, str]],
    *,
    num_workers: int,
    gpus_per_worker: float,
    cpus_per_worker: float | None,
    concurrency: int | None,
    storage: Path,
    on_done: Callable[[str, list[dict[str, Any]] | None, str | None], None],
) -> None:
    """Run (name, Job JSON) pairs; ``on_done(name, results, error)`` is called in the driver as each Job finishes.
    Each Job starts when resources free up (a long Job holds back nothing behind it): as a Ray Tune trial with one
    worker, as a Ray Train DDP run with several; by default as many run at once as the cluster fits."""
    from ray.util.queue import Empty, Queue

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
    if num_workers == 1:
        execute = _tune_executor(jobs, results_queue=results_queue, concurrency=concurrency, cpus_per_worker=cpus_per_worker,
                                 gpus_per_worker=gpus_per_worker, storage=storage)
    else:
        execute = _ddp_executor(jobs, results_queue=results_queue, concurrency=concurrency, num_workers=num_workers,
                                cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, storage=storage)
    failure: list[str] = []

    def fit() -> None:
        try:
            execute()
        except Exception as exc:  # noqa: BLE001 - the unreported Jobs are recorded as failed below
            failure.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    reported: set[str] = set()
    while True:
        try:
            name, results, error = results_queue.get(timeout=1.0)
        except (queue_module.Empty, Empty):  # nothing finished in the last second; any other error is real
            if not thread.is_alive() and results_queue.empty():
                break
            continue
        reported.add(name)
        on_done(name, results, error)
    thread.join()
    for name, _ in jobs:  # Jobs lost with a crashed trial (worker died, out of memory, ...)
        if name not in reported:
            on_done(name, None, failure[0] if failure else "the Ray Tune trial ended before this Job reported")


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()


# ---- hyperparameter search: Ray Tune + Optuna ---------------------------------------------------------------
def _search_trial(config: dict[str, Any], *, base_job: str, budget: int) -> None:
    """One search trial (a Tune function trainable, no Train start-up): pretrain with the sampled pretext
    hyperparameters (or reuse that key's checkpoint), fine-tune the tuning fraction with model selection on the
    validation cases, reporting the validation score as it goes (the scheduler stops poor trials early). No test
    case is loaded."""
    import torch
    from ray import tune

    from benchmark.job import Job
    from benchmark.plan import apply_params
    from benchmark.train import Hooks, run_job

    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    params = config["tuned"]  # what the space returned (derived values included), not Optuna's raw suggestions
    job = apply_params(Job.from_json(base_job), params, search_budget=budget)

    def report(metrics: dict[str, Any]) -> None:
        score = metrics["validation_score"]
        tune.report({**metrics, "validation_score": score if score == score else -1.0})  # NaN (undefined) -> worst

    results = run_job(job, Hooks(log=_log, report=report), evaluate_test=False)
    best = max((r.validation_score for r in results if r.validation_score is not None), default=-1.0)
    tune.report({"step": job.finetune_steps * job.finetune_rounds + 1, "validation_score": best, "best_validation_score": best, "done": True})


def run_search(
    experiments: list[dict[str, Any]],
    *,
    trials: int,
    seed: int,
    max_concurrent: int | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    storage: Path,
) -> list[dict[str, Any]]:
    """One Ray Tune experiment per entry of ``experiments`` ({"name", "job": base Job JSON, "space": define-by-run
    function returning {"tuned": the parameters to apply}}): Optuna TPE (seeded) proposes ``trials`` configurations, ASHA stops
    poor ones early on the validation score. An interrupted experiment continues from its folder under ``storage``
    (finished trials are not repeated). Returns one row per trial: experiment, trial, params, validation_score,
    status, seconds (and ``suggested``: Optuna's raw suggestions the parameters were derived from)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch
    import optuna

    rows: list[dict[str, Any]] = []
    for exp in experiments:
        trainable = tune.with_resources(tune.with_parameters(_search_trial, base_job=exp["job"], budget=trials),
                                        {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
        path = Path(storage).resolve() / exp["name"]
        if tune.Tuner.can_restore(str(path)):
            _log(f"[medssl-bench] search {exp['name']}: continuing the interrupted experiment in {path}")
            tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
        else:
            searcher = OptunaSearch(space=exp["space"], metric="validation_score", mode="max",
                                    sampler=optuna.samplers.TPESampler(seed=seed))
            scheduler = ASHAScheduler(time_attr="step", max_t=exp["max_step"], grace_period=max(1, exp["max_step"] // 4))
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(metric="validation_score", mode="max", search_alg=searcher, scheduler=scheduler,
                                            num_samples=trials, max_concurrent_trials=max_concurrent,
                                            trial_name_creator=lambda t, n=exp["name"]: f"{n}-{t.trial_id}",
                                            trial_dirname_creator=lambda t: t.trial_id),
                run_config=tune.RunConfig(name=exp["name"], storage_path=str(Path(storage).resolve()), verbose=0),
            )
        grid = tuner.fit()
        for index, result in enumerate(grid):
            history = result.metrics_dataframe
            best = float(history["validation_score"].max()) if history is not None and "validation_score" in history else float("nan")
            config = dict(result.config or {})
            params = config.pop("tuned", {})
            rows.append({"experiment": exp["name"], "trial": index, "params": params, "suggested": config, "validation_score": best,
                         "error": str(result.error).strip().splitlines()[-1][:300] if result.error else "",
                         "status": "error" if result.error else ("stopped early" if not (result.metrics or {}).get("done") else "done"),
                         "seconds": float((result.metrics or {}).get("time_total_s", float("nan")))})
    return rows
