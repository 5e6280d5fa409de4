"""``python -m benchmark.perf [--quick] [--output PATH]``: how fast the suite's loops are, measured in one process.

For each method on its paper backbone at smoke size (the Jobs ``benchmark.plan`` builds for built-in BraTS):

* ``suite_samples_per_s``: pretraining through the suite's loop (``benchmark.train.pretrain``: its loader, autocast,
  step timing, logging) vs ``bare_samples_per_s``: a bare PyTorch loop (DataLoader, forward, backward, step) over the
  same model, dataset, batch and corruption; ``ratio`` = suite / bare (the suite's overhead; target >= 0.9);
* ``loader_samples_per_s``: the loader alone (no model) vs ``consumption_samples_per_s``: the model step alone on a
  batch already in memory; ``loader_headroom`` = loader / consumption (target >= 2: the data path is not the
  bottleneck).

The first step of every loop is left out (it pays for the loader's start and first allocations). Then:

* ``default_command``: a run of the README's command (``--quick``: a tiny one) from an empty cache, its wall time and
  the breakdown from its ``timings.json`` (driver phases) and ``cells.csv`` (``stage_seconds`` of every cell: training
  loops, validation, test evaluation), and ``non_training_share`` = 1 - training seconds / (Job seconds), where Job
  seconds are the wall seconds of the Jobs phase times the Jobs that ran at once, plus the driver's other phases;
* ``scaling``: wall time and peak memory of one CSI Job (a subprocess, 5 steps per stage) as the number of cases
  doubles (8 -> 16 -> 32; ``--quick``: 8 -> 16), and of a Job run as 1 vs 2 DDP workers (full run only). Memory is
  ``peak_rss_mb`` (all resident pages, the memory-mapped prepared arrays' page cache included) and ``peak_anon_mb``
  (the process's own memory: what cannot be reclaimed; memory-mapped data pages are shared and reclaimable).

Speed targets are checked here, by numbers, never by timed unit tests.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from benchmark import ray_runner
from benchmark.backbones import build_backbone
from benchmark.cli import parse_fractions
from benchmark.datasources import resolve_task_data
from benchmark.job import Job
from benchmark.kinds import kind_of
from benchmark.methods import get_method
from benchmark.plan import MethodEntry, build_plan
from benchmark.prepared import prepare_cases, prepared_dir, prepared_root, read_volumes
from benchmark.profiles import SMOKE
from benchmark.records import ExecutionSettings, write_atomic
from benchmark.train import Hooks, make_optimizer, pretrain, pretraining_dataset, run_job
from tasks import get_task

REPO = Path(__file__).resolve().parents[1]
QUICK_METHODS = ("csi",)
ALL_METHODS = ("csi", "wsi", "dsi", "inpainting", "pixel_shuffle", "super_resolution", "intensity_shift", "rotation", "mae", "dae",
               "csm", "mae3d", "ladp", "ddp", "swav", "simsiam", "swin_unetr_ssl")


# ---- memory of this process -----------------------------------------------------------------------------------
class MemorySampler:
    """Peaks of this process's resident memory (``VmRSS``) and of its own, unreclaimable part (``RssAnon``), sampled
    from /proc every ``every_s`` seconds on a thread (Linux; elsewhere both read 0)."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.every_s, self.peak_rss_kb, self.peak_anon_kb = every_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> dict[str, int]:
        try:
            lines = Path("/proc/self/status").read_text().splitlines()
        except OSError:
            return {}
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if k in ("VmRSS", "RssAnon", "VmHWM")}

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.read()
            self.peak_rss_kb = max(self.peak_rss_kb, now.get("VmRSS", 0))
            self.peak_anon_kb = max(self.peak_anon_kb, now.get("RssAnon", 0))
            self._stop.wait(self.every_s)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss_kb = max(self.peak_rss_kb, self.read().get("VmHWM", 0))


# ---- the Jobs measured ----------------------------------------------------------------------------------------
def _brats_data(folder: Path, *, n_cases: int | None = None):
    task = get_task("brats")
    if n_cases is None:
        return task, resolve_task_data(task, data_root=None, cache_dir=folder / "cache")
    task.write_synthetic(folder / "brats", n_cases=n_cases, shape=tuple(SMOKE.volume_size), seed=0)
    return task, resolve_task_data(task, data_root=folder / "brats", cache_dir=folder / "cache")


def _jobs(methods, td, cache: Path, execution: ExecutionSettings = ExecutionSettings()) -> dict[str, Job]:
    plan = build_plan(methods=[MethodEntry(m) for m in methods], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE,
                      cache_dir=cache, execution=execution)
    return {j.method: j for j in plan.runnable() if j.pretrain is not None}


def _pretext(job: Job):
    """The method module and pretraining volumes of ``job``, built as ``benchmark.train._pretrain`` builds them."""
    task, method_cls = get_task(job.task_ref), get_method(job.method)
    torch.manual_seed(job.seed)
    backbone = build_backbone(job.backbone, in_channels=job.pretrain_channels[0], out_channels=job.pretrain_channels[1], size=job.backbone_size,
                              roi=job.roi)
    method = method_cls(backbone, job.method_config, in_channels=len(task.channels))
    cases = {c.case_id: c for c in task.find_cases(Path(job.data_root))}
    volumes = read_volumes(task, [cases[i] for i in job.pretrain.case_ids], volume_size=job.volume_size, folder=job.prepared_dir)
    return method, kind_of(task).pretraining_volumes(task, volumes)


def _per_second(samples_per_step: int, seconds: list[float]) -> float:
    timed = seconds[1:] or seconds
    return samples_per_step * len(timed) / max(sum(timed), 1e-9)


def method_throughput(job: Job, *, steps: int, loader_workers: int) -> dict:
    batch = job.pretrain.recipe.batch_size
    recipe = dataclasses.replace(job.pretrain.recipe, steps=steps)
    hooks = Hooks(log=lambda _m: None, execution=ExecutionSettings(loader_workers=loader_workers))
    method, volumes = _pretext(job)
    pretrain(method, volumes, recipe=recipe, steps=steps, roi=job.roi, seed=job.seed, hooks=hooks, protocol=job.protocol)
    suite = _per_second(batch, hooks.step_seconds["pretrain"])

    method, volumes = _pretext(job)  # the same initial weights, dataset and corruption draws, in a bare loop
    dataset = pretraining_dataset(method, volumes, roi=job.roi, length=steps * batch, seed=job.seed, protocol=job.protocol)
    generator = torch.Generator().manual_seed(job.seed)
    optimizer = make_optimizer([p for p in method.parameters() if p.requires_grad], recipe)
    loader = DataLoader(dataset, batch_size=batch, num_workers=loader_workers, drop_last=True)
    method.configure_schedule(recipe=recipe, steps=steps)
    method.train()
    bare_times, tick = [], time.perf_counter()
    for batch_data in loader:
        loss = method(batch_data, generator=generator)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bare_times.append(time.perf_counter() - tick)
        tick = time.perf_counter()
    bare = _per_second(batch, bare_times)

    loader_times, tick = [], time.perf_counter()
    for _ in DataLoader(dataset, batch_size=batch, num_workers=loader_workers, drop_last=True):
        loader_times.append(time.perf_counter() - tick)
        tick = time.perf_counter()
    one = next(iter(DataLoader(dataset, batch_size=batch, drop_last=True)))
    step_times = []
    for _ in range(steps):
        tick = time.perf_counter()
        loss = method(one, generator=generator)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step_times.append(time.perf_counter() - tick)
    loader_rate, consumption = _per_second(batch, loader_times), _per_second(batch, step_times)
    return {"method": job.method, "backbone": job.backbone, "roi": list(job.roi), "batch": batch, "steps": steps, "loader_workers": loader_workers,
            "suite_samples_per_s": suite, "bare_samples_per_s": bare, "ratio": suite / bare,
            "loader_samples_per_s": loader_rate, "consumption_samples_per_s": consumption, "loader_headroom": loader_rate / consumption}


# ---- the default command ----------------------------------------------------------------------------------------
def default_command(folder: Path, *, quick: bool) -> dict:
    """Run the README's command (quick: a tiny one) from an empty cache in a subprocess; its wall time and breakdown."""
    args = (["--methods", "scratch", "--tasks", "brats", "--profile", "tiny", "--fractions", "100%"] if quick
            else ["--methods", "csi,dae,csm", "--tasks", "brats,btcv"])
    out = folder / "default-run"
    command = [sys.executable, str(REPO / "run_benchmark.py"), *args, "--output", str(out), "--cache-dir", str(folder / "default-cache"),
               "--run-name", "perf", "--no-dashboard"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {"command": " ".join(["python run_benchmark.py", *args]), "wall_s": wall, **breakdown(out, wall_s=wall)}


def breakdown(run_folder: Path, *, wall_s: float) -> dict:
    """Where a run's time went, from its ``timings.json`` and ``cells.csv`` (see the module docstring)."""
    phases = json.loads((run_folder / "timings.json").read_text())
    cells = pd.read_csv(run_folder / "cells.csv")
    cells = cells[cells["status"] == "done"]
    stages: dict[str, float] = {}
    shared: dict[tuple, float] = {}  # a Job's pretraining and evaluation networks count once, not once per cell
    for row in cells.itertuples():
        for stage, seconds in json.loads(row.stage_seconds or "{}").items():
            if stage == "pretrain" or stage.startswith("network"):
                shared[(row.pretrain_hash or row.cell_id, stage)] = seconds
            else:
                stages[stage] = stages.get(stage, 0.0) + seconds
    for (_, stage), seconds in shared.items():
        key = "network" if stage.startswith("network") else stage
        stages[key] = stages.get(key, 0.0) + seconds
    training = sum(v for k, v in stages.items() if k in ("pretrain", "finetune", "network"))
    slots = max(1, min(os.cpu_count() or 1, len(cells.drop_duplicates("pretrain_hash"))))
    job_seconds = phases.get("jobs", 0.0) * slots + sum(v for k, v in phases.items() if k != "jobs")
    return {"driver_phases_s": phases, "job_stages_s": stages, "parallel_jobs": slots, "training_s": training,
            "non_training_share": 1.0 - training / max(job_seconds, 1e-9), "unaccounted_s": max(0.0, wall_s - sum(phases.values()))}


# ---- scaling ---------------------------------------------------------------------------------------------------
def one_job(n_cases: int, *, num_workers: int = 1) -> dict:
    """Wall time and peak memory of one CSI Job on ``n_cases`` built-in-size BraTS cases, 5 steps per stage (run as
    ``python -m benchmark.perf --one-job N`` in a fresh process, so its peaks are its own)."""
    with tempfile.TemporaryDirectory() as tmp, MemorySampler() as memory:
        start = time.perf_counter()
        task, td = _brats_data(Path(tmp), n_cases=n_cases)
        job = _jobs(["csi"], td, Path(tmp) / "cache", ExecutionSettings(max_steps=5))["csi"]
        prepare_cases(task, td.cases, prepared_root(job.prepared_dir, task, volume_size=job.volume_size), volume_size=job.volume_size, workers=1,
                      log=lambda _m: None)
        if num_workers == 1:
            run_job(job, Hooks(log=lambda _m: None))
        else:
            _ddp_job(job, num_workers)
        wall = time.perf_counter() - start
    return {"n_cases": n_cases, "workers": num_workers, "wall_s": wall, "peak_rss_mb": memory.peak_rss_kb / 1024,
            "peak_anon_mb": memory.peak_anon_kb / 1024}


def _ddp_job(job: Job, num_workers: int) -> None:
    ray_runner.start_ray(None, dashboard=True)
    results = []
    ray_runner.run_jobs([(job.name, job.to_json())], num_workers=num_workers, gpus_per_worker=0.0, cpus_per_worker=1.0, concurrency=1,
                        storage=Path(tempfile.mkdtemp()) / "ray", on_done=lambda name, res, err: results.append((res, err)))
    ray_runner.shutdown()
    if not results or results[0][1]:
        raise RuntimeError(f"DDP Job failed: {results}")


def scaling(*, quick: bool) -> list[dict]:
    sizes = (8, 16) if quick else (8, 16, 32)
    runs = [(n, 1) for n in sizes] + ([] if quick else [(16, 2)])
    out = []
    for n, workers in runs:
        done = subprocess.run([sys.executable, "-m", "benchmark.perf", "--one-job", str(n), "--workers", str(workers)], cwd=REPO,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"one Job on {n} cases ({workers} worker(s)) failed:\n{done.stderr[-3000:]}")
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


# ---- the report ------------------------------------------------------------------------------------------------
def run(*, quick: bool, output: Path, loader_workers: int, log=print) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        task, td = _brats_data(folder)
        volume_size = tuple(SMOKE.volume_size)
        prepare_cases(task, td.cases, prepared_root(prepared_dir(folder / "cache"), task, volume_size=volume_size), volume_size=volume_size,
                      workers=os.cpu_count() or 1, log=lambda _m: None)
        jobs = _jobs(QUICK_METHODS if quick else ALL_METHODS, td, folder / "cache")
        steps = 3 if quick else 20
        methods = []
        log(HEADER)
        for job in jobs.values():  # minutes each at full size: every row is printed as soon as it is measured
            methods.append(method_throughput(job, steps=steps, loader_workers=loader_workers))
            log(_method_row(methods[-1]))
        log("running the default command from an empty cache ...")
        result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                  "quick": quick, "methods": methods, "default_command": default_command(folder, quick=quick)}
        log(f"default command: {result['default_command']['wall_s']:.0f} s; measuring one Job as the cases double ...")
        result["scaling"] = scaling(quick=quick)
    write_atomic(output, json.dumps(result, indent=2))
    return result


HEADER = f"{'method':<18}{'backbone':<12}{'suite/s':>9}{'bare/s':>9}{'ratio':>7}{'loader/s':>10}{'model/s':>9}{'headroom':>9}"


def _method_row(m: dict) -> str:
    return (f"{m['method']:<18}{m['backbone']:<12}{m['suite_samples_per_s']:>9.1f}{m['bare_samples_per_s']:>9.1f}{m['ratio']:>7.2f}"
            f"{m['loader_samples_per_s']:>10.1f}{m['consumption_samples_per_s']:>9.1f}{m['loader_headroom']:>9.1f}")


def print_table(result: dict) -> None:
    print(f"machine: {result['machine']}")
    print(HEADER)
    for m in result["methods"]:
        print(_method_row(m))
    d = result["default_command"]
    print(f"default command ({d['command']}): {d['wall_s']:.0f} s; non-training share {d['non_training_share']:.0%}")
    print("  driver: " + ", ".join(f"{k} {v:.1f} s" for k, v in d["driver_phases_s"].items()))
    print("  in the Jobs: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(d["job_stages_s"].items())))
    for s in result["scaling"]:
        print(f"one Job, {s['n_cases']} cases, {s['workers']} worker(s): {s['wall_s']:.1f} s, peak RSS {s['peak_rss_mb']:.0f} MB "
              f"(own memory {s['peak_anon_mb']:.0f} MB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny version (checks the harness, not the speed)")
    parser.add_argument("--output", type=Path, default=Path("perf.json"), help="where the numbers go (default: %(default)s)")
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader processes of the throughput loops (default: %(default)s)")
    parser.add_argument("--one-job", type=int, metavar="N", help=argparse.SUPPRESS)  # the scaling subprocess
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_job:
        print(json.dumps(one_job(args.one_job, num_workers=args.workers)))
        return 0
    print_table(run(quick=args.quick, output=args.output, loader_workers=args.loader_workers))
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
