"""The run layer: a validated ``RunRequest`` -> data -> Plan -> n/a cells, resume, execution, results, report.

``benchmark.cli`` only turns arguments into a ``RunRequest`` (``benchmark.request``); this module does the run. The
planner emits frozen Jobs; finished cells of an earlier attempt (same output folder) are skipped by
selecting the Job's remaining cells; the Jobs run on Ray (``benchmark.ray_runner``, the only
module that imports Ray); every cell is written to the store as soon as its Job returns; the
report is built from the tables at the end.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import optuna
import pandas as pd

from benchmark import console, external, storage
from benchmark.datasources import attach_unlabeled, resolve_task_data
from benchmark.console import format_duration
from benchmark.estimate import estimate, load_step_times, record_step_times, reference_step_times, unit_work
from benchmark.errors import BenchmarkInputError
from benchmark.kinds import kind_of
from benchmark.output_lock import one_writer
from benchmark.plan import apply_params, build_plan, external_unsupported
from benchmark.prepared import prepare_cases, prepared_dir, prepared_root, publish_cases
from benchmark.request import ReportOptions, RunRequest
from benchmark.store import ResultStore, cell_record, result_rows, variant_label, write_atomic
from reports import build_report as build
from search_spaces import SearchSpace


def _log(message: str, *, err: bool = False) -> None:
    console.current().line(message, err=err)


def software_versions() -> dict[str, str]:
    """Versions recorded with every cell (the report's reproducibility column)."""
    out = {"python": platform.python_version()}
    for package in ("torch", "monai", "ray", "timm", "medssl-bench"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "missing"
    try:
        out["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                                    text=True, timeout=5, check=False).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git"] = "unknown"
    return out


def resolve_data(request: RunRequest) -> tuple[list, list | None]:
    """Each task's data folder (user's or built-in synthetic), every file checked up front; and the
    --pretrain-corpus tasks' data (the run's own TaskData where a task is both), or None."""
    fine_tuned = [t.name for t in request.tasks]
    corpus_only = [t for t in request.pretrain_corpus or () if t.name not in fine_tuned]
    task_data = _resolve(request, [*request.tasks, *corpus_only])
    if request.pretrain_corpus is None:
        return task_data, None
    by_name = {td.task.name: td for td in task_data}
    corpus = [by_name[t.name] for t in request.pretrain_corpus]
    _log(f"pretraining corpus of {', '.join(by_name[t.name].task.name for t in request.pretrain_corpus)}: "
         f"{sum(len(td.cases) + len(td.extra_cases) for td in corpus)} cases before the test cases are removed "
         "(for methods pretraining on single-modality samples, e.g. dae; --pretrain-corpus none: each task on its own)")
    return [td for td in task_data if td.task.name in fine_tuned], corpus


def resolve_pretrained(request: RunRequest) -> list:
    """Every --pretrained checkpoint read (hash, backbone, key mapping) and its fit to each task's network checked, before
    any data is read or prepared: a file that does not fit stops the run at once (``benchmark.external``)."""
    out = []
    for entry in request.pretrained:
        checkpoint = external.resolve(entry, profile=request.profile, backbone=request.backbone, storage_root=request.storage_root)
        for task in request.tasks:
            reason = external_unsupported(entry.name, task, checkpoint.backbone, request.finetune)
            if reason is not None:
                _log(f"--pretrained {entry.name} on {task.name}: n/a: {reason}")
                continue
            spec = external.for_task(checkpoint, task, profile=request.profile)
            _log(f"--pretrained {entry.name}: {checkpoint.backbone} weights from {entry.location} (sha256 {checkpoint.sha256[:12]}); "
                 f"for {task.name}: {spec.transfer.describe()} ({spec.layout})")
        out.append(checkpoint)
    return out


def _resolve(request: RunRequest, tasks: list) -> list:
    task_data = []
    for task in tasks:
        td = resolve_task_data(task, data_root=request.data_roots.get(task.name), cache_dir=request.cache_dir, recheck=request.check_data)
        source = "built-in synthetic data" if td.synthetic else "user data"
        checked = f"; every file read: channels {', '.join(task.channels)}, {kind_of(task).describe(task)}" if request.check_data else ""
        _log(f"task {task.name}: {len(td.cases)} cases ({source}) at {td.root}{checked}")
        if task.name in request.extra_roots:
            td = attach_unlabeled(td, request.extra_roots[task.name], cache_dir=request.cache_dir, recheck=request.check_data)
            _log(f"task {task.name}: + {len(td.extra_cases)} unlabeled pretraining cases at {td.extra_root}")
        task_data.append(td)
    return task_data


def execute(request: RunRequest) -> int:
    """The run; it holds its output folder (one writer per folder, ``benchmark.output_lock``) unless it only checks
    or prepares data (those write nothing there)."""
    if request.check_data or request.prepare_only:
        with console.session(None, verbose=request.verbose):
            return _execute(request)
    with one_writer(request.output, run_name=request.run_name), console.session(log_path(request.output), verbose=request.verbose):
        return _execute(request)


def log_path(output: Path) -> Path:
    """The run's log file: the suite's lines and everything Ray, Tune and the workers print (``benchmark.console``)."""
    return Path(output) / "logs" / "run.log"


def _execute(request: RunRequest) -> int:
    phases = _Phases()
    if not request.check_data:
        _log(f"run {request.run_name!r}, profile {request.profile.name}, output {request.output}")
    if console.current().log_path is not None:
        _log(f"log: {console.current().log_path} (Ray's, Tune's and the workers' output{'; also shown here: --verbose' if request.verbose else ''})")
    checkpoints = resolve_pretrained(request) if not request.check_data and not request.prepare_only else []
    task_data, corpus = resolve_data(request)
    phases.mark("data_check")
    if request.check_data:
        _log(f"data OK: {', '.join(t.name for t in request.tasks)} (nothing trained)")
        return 0
    prepare(request, [*task_data, *(td for td in corpus or () if td not in task_data)])
    phases.mark("data_preparation")
    if request.prepare_only:
        _log(f"prepared: {', '.join(td.task.name for td in task_data)} under {prepared_dir(request.cache_dir)} (nothing trained)")
        return 0
    plan = build_plan(methods=list(request.methods), task_data=task_data, fractions=list(request.fractions), seeds=list(request.seeds),
                      profile=request.profile, cache_dir=request.cache_dir, backbone=request.backbone, finetune=request.finetune,
                      folds=request.folds, corpus=corpus, workers=request.ray.num_workers, execution=request.execution,
                      storage=request.storage_root, pretrained=checkpoints)
    for path in external.publish(list(plan.jobs)):
        _log(f"external checkpoint copied to the storage: {path}")

    store = ResultStore(request.output, request.run_name)
    versions = software_versions()
    store.write_json("config.json", {
        "run": request.run_name, "argv": list(request.argv), "profile": dataclasses.asdict(request.profile),
        "methods": [dataclasses.asdict(m) for m in request.methods], "tasks": [t.ref for t in request.tasks],
        "pretrained": [dataclasses.asdict(p) for p in request.pretrained],
        "pretrain_corpus": [td.task.ref for td in corpus] if corpus else None,
        "fractions": [f.label for f in request.fractions], "seeds": list(request.seeds), "folds": request.folds,
        "data_roots": {td.task.name: str(td.root) for td in task_data}, "versions": versions,
        "jobs": [job.to_dict() for job in plan.jobs],
    })
    for td in task_data:
        store.add_metric_info(td.task.name, kind_of(td.task).metric_info(td.task))
    phases.mark("planning")
    with console.current().capture():
        return _run_plan(request, plan, store=store, versions=versions, phases=phases)


def _run_plan(request: RunRequest, plan, *, store, versions: dict[str, str], phases: "_Phases") -> int:
    """Search, the pending Jobs and the report, with whatever the process prints going to the run's log file."""
    try:
        failures = _search_and_run(request, plan, store=store, versions=versions, phases=phases)
    finally:  # also on Ctrl-C: the workers' last lines then reach the run's log, not the console after "interrupted"
        _release_ray()
    phases.mark("jobs")
    paths = build_report([request.output], output=request.output, title=f"medssl-bench leaderboard – {request.run_name}", options=request.report)
    phases.mark("report")
    store.write_json("timings.json", phases.seconds)  # the driver's phases (benchmark.perf reads them)
    _log(f"results: {store.results_path}")
    _log(f"leaderboard: {paths.get('markdown')} and {paths.get('html')}")
    if failures:
        _log(f"{failures} job(s) failed; see 'failed' rows in {store.cells_path}", err=True)
        return 1
    return 0


def _search_and_run(request: RunRequest, plan, *, store, versions: dict[str, str], phases: "_Phases") -> int:
    """The search (when asked for), the n/a cells, then the pending cells; returns the number of failed Jobs."""
    if request.search.trials:
        plan = dataclasses.replace(plan, jobs=tuple(search(plan.jobs, request=request, store=store)))
        phases.mark("search")
    for job in plan.jobs:
        if job.na_reason:
            for cell in job.cells:
                store.add_cell(cell_record(job, cell, status="n/a", reason=job.na_reason, versions=versions), [])
            _log(f"n/a: {job.title}: {job.na_reason}")
    finished = store.finished_cells()
    pending = []
    for job in plan.runnable():
        todo = {c.cell_id for c in job.cells} - finished
        if not todo:
            _log(f"already done: {job.title}")
        else:
            pending.append(job.with_cells(todo))

    if pending:
        gpus_per_worker = _start(request)
        phases.mark("ray_start")
        _check_estimate(pending, request=request, gpus_per_worker=gpus_per_worker)
    return _run_jobs(pending, request=request, store=store, versions=versions)


def _release_ray() -> None:
    ray_runner = sys.modules.get("benchmark.ray_runner")  # not loaded (nothing ran, Ray not imported): nothing to release
    if ray_runner is None:
        return
    try:
        ray_runner.release()
    except Exception as exc:  # never in place of the run's own outcome (an input error's exit code 2, a failed Job)
        _log(f"could not stop the Ray cluster cleanly: {type(exc).__name__}: {exc}", err=True)


class _Phases:
    """Wall seconds of the driver's phases, in order (``timings.json``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


def prepare(request: RunRequest, task_data: list) -> None:
    """Decode and pre-process every case of ``task_data`` (and its --pretrain-extra cases) once into the cache's prepared,
    memory-mapped arrays (``benchmark.prepared``), ``--prepare-workers`` processes at a time; prepared cases are skipped."""
    workers = request.prepare_workers or os.cpu_count() or 1
    volume_size = tuple(request.profile.volume_size) if request.profile.volume_size else None
    for td in task_data:
        root = prepared_root(prepared_dir(request.cache_dir), td.task, volume_size=volume_size)
        prepare_cases(td.task, [*td.cases, *td.extra_cases], root, volume_size=volume_size, workers=workers, log=_log)
        if storage.normalise(request.storage_root) != storage.normalise(request.cache_dir):  # --storage: the workers read them there
            publish_cases(td.task, [*td.cases, *td.extra_cases], root, storage.join(request.storage_root, "prepared"), volume_size=volume_size,
                          log=_log)


def ray_storage(request: RunRequest, what: str) -> str:
    """Where Ray Train / Tune keep ``what`` ("ray": the Jobs, "tune": the searches and their records): the output folder,
    or with ``--storage`` the run's folder there (every node writes into it; the driver alone writes the output folder)."""
    if request.storage is None:
        return str(request.output / what)
    return storage.join(request.storage, "runs", request.run_name, what)


def _check_estimate(jobs: list, *, request: RunRequest, gpus_per_worker: float) -> None:
    """Before a paper-profile run: print its training time from measured step times; without GPUs, a run estimated at
    over an hour needs --yes."""
    if request.profile.name != "paper" or request.execution.max_steps is not None:
        return
    device = "cuda" if gpus_per_worker else "cpu"
    guess = estimate(jobs, step_times=load_step_times(request.cache_dir), device=device)
    _log("estimate (steps x measured seconds per step, per stage):")
    for line in guess.lines(workers=request.ray.num_workers):
        _log(line)
    if not gpus_per_worker and guess.seconds > 3600 and not request.confirmed:
        raise BenchmarkInputError("this paper-profile run is estimated at over an hour of training on a cluster without GPUs: add --yes to start "
                                  "it anyway, --max-steps 2 for a dry run that measures memory and step times, or --profile smoke")


def _run_jobs(jobs: list, *, request: RunRequest, store, versions: dict[str, str]) -> int:
    """Run ``jobs`` on Ray, recording every cell as its Job returns; the number of failed Jobs."""
    if not jobs:
        return 0
    from benchmark import ray_runner  # lazy: Ray loads only when something runs (not for --report)

    options = request.ray
    gpus_per_worker = _start(request)
    device = "cuda" if gpus_per_worker else "cpu"
    measured = load_step_times(request.cache_dir)
    step_times = {**reference_step_times(), **measured}
    # Longest planned Jobs first (LPT scheduling): the run's end is not a long Job started last on a slot of its own.
    work = {job.name: sum(unit_work(job, step_times=step_times, device=device)[1].values()) for job in jobs}
    jobs = sorted(jobs, key=lambda job: -work[job.name])
    by_name = {job.name: job for job in jobs}
    device_count = options.num_workers * (gpus_per_worker or 1)
    state = {"failures": 0, "done": 0}
    started = time.perf_counter()

    _, concurrency = ray_runner.job_slots(len(jobs), num_workers=options.num_workers, gpus_per_worker=gpus_per_worker,
                                          cpus_per_worker=options.cpus_per_worker, concurrency=options.concurrency)
    units = {name: unit_work(job, step_times=step_times, device=device) for name, job in by_name.items()}
    guess = estimate(jobs, step_times=step_times, device=device)
    kind = "Ray Tune trials" if options.num_workers == 1 else f"Ray Train runs of {options.num_workers} DDP workers"
    bound = "at least " if guess.unmeasured_steps else "about "
    _log(f"plan: {len(jobs)} unit(s) ({sum(len(j.cells) for j in jobs)} cells) as {kind}, {concurrency} at once; "
         f"{bound}{format_duration(guess.seconds / concurrency)} of training steps (step times measured on "
         f"{'earlier runs' if measured else 'a 2-core CPU'}; validation and start-up not counted)")
    display = console.Progress(console.current(), units)

    def on_done(name: str, results, error: str | None) -> None:
        job = by_name[name]
        state["done"] += 1
        stage = display.stage_of(name)
        display.finish(name)
        progress = f"[{state['done']}/{len(jobs)}]"
        if error is not None:
            state["failures"] += 1
            message = error.splitlines()[0][:500]
            for cell in job.cells:
                store.add_cell(cell_record(job, cell, status="failed", reason=message, versions=versions), [])
            where = f" during {stage}" if stage else ""
            _log(f"{progress} FAILED {job.title}{where}: {error.rstrip()}\n  full log: {console.current().log_path}", err=True)
            return
        cells = {c.cell_id: c for c in job.cells}
        summary = []
        for result in results:
            cell = cells[result.cell_id]
            store.add_cell(cell_record(job, cell, status="done", result=result, device_count=device_count, versions=versions),
                           result_rows(job, cell, result))
            if result.curve:
                store.add_curve(cell.cell_id, result.curve)
            summary.append(f"{cell.fraction}: {_headline(result)}")
        record_step_times(request.cache_dir, job, results, device=device)
        reused = " (pretraining reused)" if results and results[0].pretrain_reused else ""
        _log(f"{progress} {job.title}{reused}: {'; '.join(summary)}  [{time.perf_counter() - started:.0f}s]")

    try:
        ray_runner.run_jobs([(name, job.to_json()) for name, job in by_name.items()], num_workers=options.num_workers,
                            gpus_per_worker=gpus_per_worker, cpus_per_worker=options.cpus_per_worker, concurrency=options.concurrency,
                            storage=ray_storage(request, "ray"), on_done=on_done, max_failures=options.max_failures,
                            on_progress=display.event)
    finally:
        display.close()
    return state["failures"]


# ---- hyperparameter search ------------------------------------------------------------------------------
def search(jobs: tuple, *, request: RunRequest, store) -> list:
    """Search each (method, variant, backbone, task) on the validation cases of its first split at the tuning
    fraction (Ray Tune + Optuna, ``benchmark.ray_runner.run_search``); write ``tuning.csv`` and
    ``best_configs.json``; return every Job with its group's best configuration (n/a Jobs unchanged)."""
    from benchmark import ray_runner  # lazy: Ray loads only when something runs (not for --report)

    options = request.search
    groups: dict[str, list] = {}
    for job in jobs:
        if job.na_reason is None:
            groups.setdefault(_group_key(job, variant_label), []).append(job)
    experiments, budgets = [], {}
    for key, members in groups.items():
        base = _tuning_job(members, options.fraction)
        space = _define_by_run(base, options)
        if space is None:
            _log(f"search {key}: nothing to tune (no pretext hyperparameter; --tune-finetune adds the learning rate): paper defaults")
            budgets[key] = 0
            continue
        budgets[key] = options.trials
        experiments.append({"name": _experiment_name(key), "key": key, "job": base.to_json(), "space": space,
                            "max_step": base.finetune_steps * base.finetune_rounds + 1, "seed": base.seed})
    rows = []
    if experiments:
        gpus_per_worker = _start(request)
        _log(f"searching {len(experiments)} experiment(s) x {options.trials} trial(s) on the validation cases (no test case is read)")
        rows = ray_runner.run_search(experiments, trials=options.trials, seed=options.seed, max_concurrent=options.max_concurrent,
                                     num_workers=request.ray.num_workers, cpus_per_worker=request.ray.cpus_per_worker,
                                     gpus_per_worker=gpus_per_worker, storage=ray_storage(request, "tune"))
    by_name = {e["name"]: e["key"] for e in experiments}
    table = pd.DataFrame([{**dict(zip(("method", "backbone", "task"), _split_key(by_name[r["experiment"]]))), "trial": r["trial"],
                           "params": json.dumps(r["params"], sort_keys=True), "validation_metric": r["validation_score"],
                           "status": r["status"], "duplicate_of": r["duplicate_of"], "seconds": r["seconds"],
                           "suggested": json.dumps(r["suggested"], sort_keys=True), "error": r["error"]} for r in rows],
                         columns=["method", "backbone", "task", "trial", "params", "validation_metric", "status", "duplicate_of", "seconds",
                                  "suggested", "error"])
    write_atomic(store.folder / "tuning.csv", table.to_csv(index=False))
    best: dict[str, dict] = {}
    for name, key in by_name.items():
        trials = [r for r in rows if r["experiment"] == name and r["validation_score"] == r["validation_score"]]
        errors = [r["error"] for r in rows if r["experiment"] == name and r["error"]]
        if errors:
            _log(f"search {key}: {len(errors)} trial(s) failed, e.g. {errors[0]}", err=not trials)
        if not trials:
            _log(f"search {key}: no trial finished; its cells run with the paper defaults (see tuning.csv)", err=True)
        else:
            winner = max(trials, key=lambda r: r["validation_score"])
            best[key] = {"params": winner["params"], "validation_metric": winner["validation_score"], "trials": len(trials)}
            _log(f"search {key}: best validation score {winner['validation_score']:.4f} with {winner['params']}")
    store.write_json("best_configs.json", best)
    out = []
    for job in jobs:
        key = _group_key(job, variant_label) if job.na_reason is None else None
        out.append(apply_params(job, best[key]["params"], search_budget=budgets[key]) if key in best else
                   (dataclasses.replace(job, search_budget=budgets.get(key, 0)) if key else job))
    return out


def _group_key(job, variant_label) -> str:
    variant = variant_label(job.method_overrides)
    return f"{job.method}{':' + variant if variant else ''}|{job.backbone}|{job.task}"


def _split_key(key: str) -> tuple[str, str, str]:
    method, backbone, task = key.split("|")
    return method, backbone, task


def _experiment_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", key)


def _tuning_job(members: list, fraction: str | None):
    """The group's Job on its first split (lowest seed, fold 0) restricted to the tuning fraction's cell
    (default: the fewest labelled cases, where pretraining matters most)."""
    first = min(members, key=lambda j: (j.seed, j.fold))
    candidates = [j for j in members if (j.seed, j.fold) == (first.seed, first.fold)]
    cells = [(c, j) for j in candidates for c in j.cells]
    cell, job = next(((c, j) for c, j in cells if c.fraction == fraction), None) if fraction else (None, None)
    if cell is None:
        cell, job = min(cells, key=lambda cj: cj[0].n_labeled)
    return job.with_cells({cell.cell_id})


@dataclasses.dataclass(frozen=True)
class _TrialSpace:
    """What Ray Tune's Optuna searcher calls: the method's ``SearchSpace``, its result under "tuned" (Ray adds
    Optuna's raw suggestions beside it; the trial applies only these, derived values included)."""

    space: object  # search_spaces.SearchSpace

    def __call__(self, trial) -> dict:
        return {"tuned": self.space(trial)}


def _define_by_run(job, options):
    """The search space of a Job's method (+ the opt-in fine-tuning part), or None when it is empty."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recipe = job.finetune_recipe
    space = SearchSpace(job.method if job.external is None else None, finetune_lr=recipe.lr if options.finetune_lr else None,
                        finetune_batch_size=recipe.batch_size if options.finetune_lr and options.finetune_batch_size else None)
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    return _TrialSpace(space) if space(probe) else None


def _start(request: RunRequest) -> float:
    """Start or join Ray (once); returns the GPUs per worker: ``--gpus-per-worker``, else one when the cluster has GPUs."""
    from benchmark import ray_runner  # lazy: Ray loads only when something runs (not for --report)

    options = request.ray
    if ray_runner.is_started():
        return _gpus_per_worker(options, ray_runner.cluster_gpus(), announce=False)
    # Ray Train V2 releases the workers of a run that was stopped (early-stopped search trial, Ctrl-C) through the
    # dashboard's State API: without it their CPUs stay reserved and the next Train run waits forever
    needs_dashboard = options.num_workers > 1
    if needs_dashboard and not options.dashboard:
        _log("--no-dashboard ignored: with --num-workers > 1, Ray Train needs the dashboard's State API to release stopped runs")
    try:
        dashboard = ray_runner.start_ray(options.address, dashboard=options.dashboard or needs_dashboard)
    except ray_runner.ClusterUnreachable as exc:
        raise BenchmarkInputError(str(exc)) from None
    if dashboard:
        hint = ray_runner.dashboard_token_hint()
        _log(f"Ray dashboard: {dashboard}" + (f" ({hint})" if hint else ""))
    return _gpus_per_worker(options, ray_runner.cluster_gpus(), announce=True)


def _gpus_per_worker(options, cluster_gpus: float, *, announce: bool) -> float:
    if options.gpus_per_worker is not None:
        return float(options.gpus_per_worker)
    if cluster_gpus:
        if announce:
            _log(f"the cluster has {cluster_gpus:g} GPU(s): each Ray worker gets one (--gpus-per-worker to change)")
        return 1.0
    return 0.0


def _headline(result) -> str:
    """The main number of a finished cell for the progress line: mean Dice over test cases, else a set metric."""
    dice = [r.value for r in result.rows if r.metric == "dice_mean"]
    if dice:
        return f"dice_mean {sum(dice) / len(dice):.3f}"
    sets = [r for r in result.rows if r.case_id is None]
    if not sets and result.rows:  # per-case metrics only (synthesis): the mean of the first one (its main metric)
        first = result.rows[0].metric
        values = [r.value for r in result.rows if r.metric == first]
        return f"{first} {sum(values) / len(values):.3f}"
    return ", ".join(f"{r.metric} {r.value:.3f}" for r in sets) or "no metrics"


def build_report(run_dirs: list[Path], *, output: Path, title: str, options: ReportOptions) -> dict[str, Path]:
    return build([Path(d) for d in run_dirs], out_dir=Path(output), publish_dir=options.publish, title=title, test=options.test, holm=options.holm,
                 paper_datasets=dict(options.paper_datasets))


def report_only(run_dirs: list[Path], *, output: Path | None, options: ReportOptions) -> int:
    """``--report DIR [DIR ...]``: the report of finished runs, from their tables alone (nothing trains)."""
    missing = [str(d) for d in run_dirs if not (Path(d) / "cells.csv").exists()]
    if missing:
        raise BenchmarkInputError(f"--report: {', '.join(missing)} hold(s) no cells.csv; expected the output folder of a run")
    out = Path(output) if output else Path(run_dirs[0])
    paths = build_report(run_dirs, output=out, title=f"medssl-bench leaderboard – {', '.join(Path(d).name for d in run_dirs)}", options=options)
    for kind, path in paths.items():
        _log(f"report {kind}: {path}")
    return 0
