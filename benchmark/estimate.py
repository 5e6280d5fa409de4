"""How long a plan will take, from step times measured by earlier runs (``--max-steps`` dry runs included).

Every finished cell brings back the seconds per optimiser step of each stage it trained (``CellResult.step_seconds``:
pretrain, finetune, network <role>). The run layer keeps them in ``<cache>/step_times.json``, keyed by what a step
costs: the stage's network and crop, its batch, the precision and the device kind. Before a paper-profile run,
``estimate`` multiplies each planned stage's steps by its measured step time; a stage never measured is counted at
``UNMEASURED_FLOOR_S`` per step (a lower bound: no paper-size step on any device is faster), so the total is a
lower bound where anything is unmeasured, and the text says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.records import write_atomic

if TYPE_CHECKING:
    from benchmark.job import CellResult, Job

STEP_TIMES_FILE = "step_times.json"
UNMEASURED_FLOOR_S = 0.05  # seconds per step assumed for a stage never measured (a lower bound)


def _key(stage: str, *, network: str, roi, batch: int, precision: str, device: str) -> str:
    return f"{stage}|{network}|{'x'.join(map(str, roi))}|b{batch}|{precision}|{device}"


def stage_keys(job: "Job", *, device: str) -> dict[str, tuple[str, int]]:
    """stage name (as the loops record it) -> (step-time key, planned steps) of every stage ``job`` trains."""
    precision = job.execution.precision
    out = {}
    if job.pretrain is not None:
        out["pretrain"] = (_key(f"pretrain {job.method}", network=job.backbone, roi=job.roi, batch=job.pretrain.recipe.batch_size,
                                precision=precision, device=device), job.pretrain.steps)
    out["finetune"] = (_key("finetune", network=job.backbone, roi=job.roi, batch=job.finetune_recipe.batch_size, precision=precision, device=device),
                       job.finetune_steps * job.finetune_rounds * len(job.cells))
    for net in job.networks:
        out[f"network {net.role}"] = (_key(f"network {net.role}", network=net.backbone, roi=net.roi, batch=net.recipe.batch_size,
                                           precision=precision, device=device), net.steps)
    return out


def load_step_times(cache_dir: Path) -> dict[str, float]:
    path = Path(cache_dir) / STEP_TIMES_FILE
    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError):
        return {}


def record_step_times(cache_dir: Path, job: "Job", results: list["CellResult"], *, device: str) -> None:
    """Add the step times ``results`` measured to the cache's table (the latest measurement of a key wins)."""
    keys = stage_keys(job, device=device)
    measured = {keys[stage][0]: seconds for result in results for stage, seconds in result.step_seconds.items() if stage in keys}
    if measured:
        table = {**load_step_times(cache_dir), **measured}
        write_atomic(Path(cache_dir) / STEP_TIMES_FILE, json.dumps(table, indent=1, sort_keys=True))


@dataclass
class Estimate:
    seconds: float = 0.0  # wall seconds of one worker, summed over Jobs
    unmeasured_steps: int = 0  # steps counted at the floor
    by_stage: dict[str, tuple[int, float]] = field(default_factory=dict)  # stage kind -> (steps, seconds)

    @property
    def lower_bound(self) -> bool:
        return self.unmeasured_steps > 0

    def lines(self, *, workers: int) -> list[str]:
        out = []
        for stage, (steps, seconds) in sorted(self.by_stage.items()):
            out.append(f"  {stage}: {steps} steps, {seconds / 3600:.2f} h")
        bound = "at least " if self.lower_bound else ""
        hours = self.seconds / 3600
        out.append(f"  total: {bound}{hours:.2f} h of training ({bound}{hours * workers:.2f} device-hours with {workers} worker(s) per Job)"
                   + (f"; {self.unmeasured_steps} steps never measured were counted at {UNMEASURED_FLOOR_S} s "
                      "(a --max-steps 2 dry run measures them)" if self.lower_bound else ""))
        return out


def estimate(jobs: list["Job"], *, step_times: dict[str, float], device: str) -> Estimate:
    """The training time of ``jobs`` (cached pretrainings and evaluation networks cost nothing)."""
    total = Estimate()
    for job in jobs:
        cached = {"pretrain": job.pretrain is not None and Path(job.pretrain.path).exists()}
        cached.update({f"network {n.role}": Path(n.path).exists() for n in job.networks})
        for stage, (key, steps) in stage_keys(job, device=device).items():
            if cached.get(stage):
                continue
            per_step = step_times.get(key)
            if per_step is None:
                per_step, total.unmeasured_steps = UNMEASURED_FLOOR_S, total.unmeasured_steps + steps
            kind = stage.split(" ")[0]
            done_steps, done_seconds = total.by_stage.get(kind, (0, 0.0))
            total.by_stage[kind] = (done_steps + steps, done_seconds + steps * per_step)
            total.seconds += steps * per_step
    return total


REFERENCE_STEP_TIMES = Path(__file__).with_name("reference_step_times.json")


def reference_step_times() -> dict[str, float]:
    """Step times of the smoke profile measured on a 2-core CPU (shipped; a run's own measurements in the cache win):
    what a first run on an empty cache estimates its time from."""
    try:
        return {k: float(v) for k, v in json.loads(REFERENCE_STEP_TIMES.read_text()).items()}
    except (OSError, ValueError):
        return {}


def unit_work(job: "Job", *, step_times: dict[str, float], device: str) -> tuple[str, dict[str, float], dict[str, int]]:
    """A Job as the progress display weighs it (``benchmark.console.Progress``): its title, the planned seconds of each
    stage kind (pretrain, finetune, network; steps x measured step time, ``UNMEASURED_FLOOR_S`` where unmeasured;
    a cached pretraining costs nothing) and how many stages of each kind it runs (a fine-tuning per cell and round)."""
    work: dict[str, float] = {}
    counts: dict[str, int] = {}
    for stage, (key, steps) in stage_keys(job, device=device).items():
        if stage == "pretrain" and Path(job.pretrain.path).exists():
            continue
        kind = stage.split(" ")[0]
        work[kind] = work.get(kind, 0.0) + steps * step_times.get(key, UNMEASURED_FLOOR_S)
        counts[kind] = counts.get(kind, 0) + (len(job.cells) * job.finetune_rounds if kind == "finetune" else 1)
    return job.title, work, counts
