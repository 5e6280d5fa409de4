"""--max-steps, the paper-profile estimate and its --yes, the execution columns of cells.csv and the dry-run rows of the
report; the command line's checks of the new options."""
from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from benchmark import cli
from benchmark.datasources import resolve_task_data
from benchmark.errors import BenchmarkInputError
from benchmark.estimate import UNMEASURED_FLOOR_S, estimate, load_step_times, record_step_times, stage_keys
from benchmark.job import CellResult
from benchmark.plan import MethodEntry, build_plan
from benchmark.profiles import PAPER, SMOKE
from benchmark.records import ExecutionSettings
from benchmark.run import _check_estimate
from benchmark.store import cell_record
from reports.tables import dry_run_steps, row_label
from tasks import get_task


@pytest.fixture(scope="module")
def brats_jobs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("estimate")
    td = resolve_task_data(get_task("brats"), data_root=None, cache_dir=cache)

    def plan(profile, execution=ExecutionSettings()):
        jobs = build_plan(methods=[MethodEntry("csi")], task_data=[td], fractions=cli.parse_fractions("100%,25%"), seeds=[0], profile=profile,
                          cache_dir=cache, execution=execution).runnable()
        return {j.method: j for j in jobs}

    return cache, plan


def test_estimate_is_steps_times_measured_step_time(brats_jobs, tmp_path):
    cache, plan = brats_jobs
    job = plan(SMOKE)["csi"]
    keys = stage_keys(job, device="cpu")
    assert set(keys) == {"pretrain", "finetune"} and keys["finetune"][1] == job.finetune_steps * len(job.cells)
    result = CellResult(cell_id=job.cells[0].cell_id, rows=(), finetune_seconds=1.0, pretrain_seconds=1.0, pretrain_reused=False,
                        final_finetune_loss=0.1, step_seconds={"pretrain": 0.5, "finetune": 0.25})
    record_step_times(tmp_path, job, [result], device="cpu")
    times = load_step_times(tmp_path)
    guess = estimate([job], step_times=times, device="cpu")
    assert not guess.lower_bound
    assert guess.seconds == pytest.approx(job.pretrain.steps * 0.5 + job.finetune_steps * len(job.cells) * 0.25)
    unmeasured = estimate([job], step_times={}, device="cuda")  # another device: nothing measured, counted at the floor
    assert unmeasured.lower_bound and unmeasured.seconds == pytest.approx((job.pretrain.steps + keys["finetune"][1]) * UNMEASURED_FLOOR_S)
    assert "at least" in unmeasured.lines(workers=1)[-1]


def test_paper_run_over_an_hour_without_gpus_needs_yes(brats_jobs):
    _, plan = brats_jobs
    jobs = list(plan(PAPER).values())
    args = ["--methods", "csi", "--tasks", "brats", "--profile", "paper", "--cache-dir", "/nonexistent-cache"]
    request = cli.build_request(cli.build_parser().parse_args(args), args)
    with pytest.raises(BenchmarkInputError, match="--yes"):
        _check_estimate(jobs, request=request, gpus_per_worker=0.0)
    _check_estimate(jobs, request=dataclasses.replace(request, confirmed=True), gpus_per_worker=0.0)
    _check_estimate(jobs, request=request, gpus_per_worker=1.0)  # with GPUs the estimate is printed, nothing asked
    dry = dataclasses.replace(request, execution=ExecutionSettings(max_steps=2))
    _check_estimate(jobs, request=dry, gpus_per_worker=0.0)  # a dry run is never asked about


def test_cells_record_the_execution_and_the_report_marks_dry_runs(brats_jobs):
    _, plan = brats_jobs
    job = plan(SMOKE, ExecutionSettings(max_steps=2, precision="bf16", loader_workers=2))["csi"]
    result = CellResult(cell_id=job.cells[0].cell_id, rows=(), finetune_seconds=1.0, pretrain_seconds=1.0, pretrain_reused=False,
                        final_finetune_loss=0.1, step_seconds={"finetune": 0.2}, stage_seconds={"finetune": 0.4, "test": 1.0})
    record = cell_record(job, job.cells[0], status="done", result=result)
    assert (record["max_steps"], record["precision"], record["loader_workers"], record["compiled"]) == (2, "bf16", 2, False)
    assert json.loads(record["stage_seconds"]) == {"finetune": 0.4, "test": 1.0}
    row = pd.Series({**record, "finetune_aug": "none", "missing_series": 0.0, "config": "", "variant": ""})
    assert dry_run_steps(row) == 2
    assert row_label("csi", "unet2d", row) == "csi (unet2d) bf16 [dry run: max 2 steps, not a result]"
    plain = pd.Series({**row, "max_steps": "", "precision": "fp32"})
    assert row_label("csi", "unet2d", plain) == "csi (unet2d)" and dry_run_steps(plain) is None


@pytest.mark.parametrize("flags,match", [(["--max-steps", "0"], "max-steps"), (["--loader-workers", "-1"], "loader-workers"),
                                         (["--prepare-workers", "0"], "prepare-workers")])
def test_bad_execution_flags_are_one_clear_error(flags, match, capsys):
    assert cli.main(["--methods", "csi", "--tasks", "brats", *flags]) == 2
    assert match in capsys.readouterr().err


def test_prepare_only_prepares_every_case_and_trains_nothing(tmp_path, capsys):
    """--prepare: each task's cases land in the cache's prepared folder (memory-mappable arrays) and the run stops there."""
    args = ["--methods", "csi", "--tasks", "brats", "--prepare", "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "prepared: brats" in out and "nothing trained" in out
    (folder,) = (tmp_path / "cache" / "prepared").iterdir()
    cases = [p for p in folder.iterdir() if p.is_dir()]
    assert len(cases) == get_task("brats").synthetic_cases and all((c / "image.npy").exists() and (c / "meta.json").exists() for c in cases)
    assert not (tmp_path / "out" / "cells.csv").exists()
    assert cli.main(args) == 0 and "preparing" not in capsys.readouterr().out  # prepared once: the second call decodes nothing


@pytest.mark.slow
def test_compiled_job_gives_the_numbers_of_the_plain_one(brats_jobs, tmp_path):
    """--compile (inductor on CPU: minutes of compilation) trains and evaluates the same Job to the same values within
    float tolerance, and its checkpoint keys are those of the plain network."""
    import torch

    from benchmark.train import Hooks, run_job

    _, plan = brats_jobs
    job = plan(SMOKE, ExecutionSettings(max_steps=2))["csi"]
    job = dataclasses.replace(job, cells=job.cells[:1])
    runs = {}
    for compiled in (False, True):
        one = dataclasses.replace(job, execution=dataclasses.replace(job.execution, compile=compiled),
                                  pretrain=dataclasses.replace(job.pretrain, path=str(tmp_path / f"{compiled}.pt")))
        runs[compiled] = run_job(one, Hooks(log=lambda _m: None))[0]
    plain, fast = runs[False], runs[True]
    assert [(r.metric, r.case_id) for r in plain.rows] == [(r.metric, r.case_id) for r in fast.rows]
    assert all(abs(a.value - b.value) < 1e-3 or (a.value != a.value and b.value != b.value) for a, b in zip(plain.rows, fast.rows))
    assert torch.load(tmp_path / "True.pt", weights_only=True)["backbone"].keys() == torch.load(tmp_path / "False.pt", weights_only=True)["backbone"].keys()
