"""Every registered method through the real loops on a GPU: one pretraining step, one fine-tuning step and the
evaluation, in fp32 and bf16 (skipped without CUDA; CI has none, a lent GPU machine runs it).

Device mismatches (a CPU ``torch.Generator`` drawing for CUDA tensors, masks or index tensors left on the CPU, a
bf16 tensor reaching numpy) only show on a GPU, so the Jobs are planned and run exactly as a run plans and runs them
(``build_plan`` on the built-in data, ``run_job`` with the device in its Hooks), each stage capped at one step.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from benchmark.cli import parse_fractions
from benchmark.datasources import resolve_task_data
from benchmark.methods import list_methods
from benchmark.plan import MethodEntry, build_plan
from benchmark.profiles import TINY
from benchmark.records import ExecutionSettings
from benchmark.train import Hooks, run_job
from tasks import get_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SEGMENTATION_TASK, SYNTHESIS_TASK = "brats", "brats_synthesis"


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    cache = tmp_path_factory.mktemp("gpu-cache")
    return cache, {name: resolve_task_data(get_task(name), data_root=None, cache_dir=cache) for name in (SEGMENTATION_TASK, SYNTHESIS_TASK)}


def _jobs(method: str, task_data, precision: str):
    cache, data = task_data
    out = []
    for name, td in data.items():
        plan = build_plan(methods=[MethodEntry(method)], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=TINY,
                          cache_dir=cache, execution=ExecutionSettings(precision=precision, max_steps=1))
        out += [j for j in plan.runnable() if j.method == method]
    return out


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("method", list_methods())
def test_method_runs_on_cuda(method, precision, task_data, tmp_path):
    jobs = _jobs(method, task_data, precision)
    assert jobs, f"{method}: no runnable Job on {SEGMENTATION_TASK} or {SYNTHESIS_TASK}"
    for job in jobs:
        if job.pretrain is not None:  # a fresh pretraining every time (no checkpoint of another precision or test)
            job = dataclasses.replace(job, pretrain=dataclasses.replace(job.pretrain, path=str(tmp_path / f"{job.name}.pt")))
        job = dataclasses.replace(job, networks=tuple(dataclasses.replace(n, path=str(tmp_path / f"{n.role}-{n.key}.pt")) for n in job.networks))
        results = run_job(job, Hooks(log=lambda _m: None, device=torch.device("cuda")))
        for result in results:
            assert result.rows, f"{job.title}: no metric rows"
            assert np.isfinite(result.final_finetune_loss)
            assert all(np.isfinite(r.value) or np.isnan(r.value) for r in result.rows)
