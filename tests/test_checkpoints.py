"""Checkpoints inside the training stages (benchmark/checkpoints.py, benchmark/train.py): a Job interrupted right
after any checkpoint and run again continues from it and ends with exactly the numbers of an uninterrupted Job; an
unreadable or foreign checkpoint, or cached pretraining, is reported with its path and recomputed."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from benchmark.checkpoints import StageCheckpoint, capture_rng, restore_rng
from benchmark.cli import parse_fractions
from benchmark.datasources import resolve_task_data
from benchmark.plan import MethodEntry, build_plan, with_execution
from benchmark.profiles import SMOKE
from benchmark.records import ExecutionSettings, FinetuneSettings
from benchmark.train import Hooks, run_job
from tasks import get_task

SHAPE = (32, 32, 8)
STEPS = 6


class Killed(Exception):
    """Stands for the worker dying right after a checkpoint reached the disk."""


def _plan(tmp: Path, methods: list[str], **kw):
    """8 tiny synthetic BraTS subjects, 6-step stages of batch 2, checkpoints every 2 steps; mixup in fine-tuning (its
    draws come from the stage's generator)."""
    data = tmp / "brats"
    get_task("brats").write_synthetic(data, n_cases=8, shape=SHAPE, seed=0)
    td = resolve_task_data(get_task("brats"), data_root=data, cache_dir=tmp / "cache")
    few = lambda recipe: dataclasses.replace(recipe, steps=STEPS, batch_size=2)  # noqa: E731
    profile = dataclasses.replace(
        SMOKE, name="unit", volume_size=SHAPE, rois={**SMOKE.rois, "unet2d": (32, 32)},
        finetune_recipes={k: few(v) for k, v in SMOKE.finetune_recipes.items()},
        smoke_pretrain={k: few(v) for k, v in SMOKE.smoke_pretrain.items()},
    )
    plan = build_plan(methods=[MethodEntry(m) for m in methods], task_data=[td], fractions=parse_fractions("100%,25%"), seeds=[0],
                      profile=profile, cache_dir=tmp / "cache", finetune=FinetuneSettings(augmentation="mixup", mixup_alpha=0.4), **kw)
    return [with_execution(job, ExecutionSettings(checkpoint_every=2)) for job in plan.jobs if job.na_reason is None]


def _numbers(results) -> list[tuple]:
    return [(r.cell_id, r.rows, r.curve, r.selected_step, r.validation_score, r.final_finetune_loss) for r in results]


def _kill_at_save(monkeypatch, number: int) -> list[Path]:
    """Make the ``number``-th checkpoint write (counted from 1) the last thing the 'worker' does."""
    real, written = StageCheckpoint.save, []

    def save(self, state, rng):
        real(self, state, rng)
        written.append(Path(self.path))
        if len(written) == number:
            raise Killed(f"killed after checkpoint {Path(self.path).name} at step {state['step']}")

    monkeypatch.setattr(StageCheckpoint, "save", save)
    return written


def _fresh(job) -> None:
    """Forget the Job's cached pretraining and checkpoints (the next run computes everything again)."""
    if job.pretrain is not None:
        Path(job.pretrain.path).unlink(missing_ok=True)
    shutil.rmtree(job.checkpoint_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def csi_job(tmp_path_factory):
    job = _plan(tmp_path_factory.mktemp("ckpt"), ["csi"])[0]
    _fresh(job)
    return job, run_job(job, Hooks(log=lambda _m: None))


@pytest.mark.parametrize("kill_at", [2, 4, 6])  # pretraining at step 4; cell 1 at step 2; cell 1 at its last step
def test_interrupted_job_resumes_with_identical_numbers(csi_job, monkeypatch, kill_at):
    job, reference = csi_job
    assert job.pretrain.augmentation == "si"  # kill_at 2: an augmented pretraining (SI 5.5.3) resumes with the same numbers
    _fresh(job)
    written = _kill_at_save(monkeypatch, kill_at)
    with pytest.raises(Killed):
        run_job(job, Hooks(log=lambda _m: None))
    monkeypatch.undo()
    assert written[-1].exists()
    logs: list[str] = []
    resumed = run_job(job, Hooks(log=logs.append))
    assert _numbers(resumed) == _numbers(reference)
    # 3 pretraining checkpoints (steps 2, 4, 6), then 3 per cell
    expected_pretrain = 2 * kill_at if kill_at <= 3 else 0
    assert resumed[0].resumed_from.get("pretrain", 0) == expected_pretrain
    if kill_at > 3:
        assert resumed[0].resumed_from["finetune"] == 2 * (kill_at - 3)
        assert "finetune" not in resumed[1].resumed_from
    assert any("resumed from its checkpoint" in line for line in logs)
    assert not list(Path(job.checkpoint_dir).glob("*.pt"))  # served and removed once the Job's results exist


def test_restart_resumes_in_its_second_round(tmp_path, monkeypatch):
    """CNN-restart (two fine-tuning rounds): killed in round 2, the first round is not run again and the numbers stay."""
    job = _plan(tmp_path, ["restart"])[0]
    _fresh(job)
    reference = run_job(job, Hooks(log=lambda _m: None))
    _fresh(job)
    _kill_at_save(monkeypatch, 4)  # round 1: steps 2, 4, 6; round 2: step 2
    with pytest.raises(Killed):
        run_job(job, Hooks(log=lambda _m: None))
    monkeypatch.undo()
    logs: list[str] = []
    resumed = run_job(job, Hooks(log=logs.append))
    assert _numbers(resumed) == _numbers(reference)
    assert resumed[0].resumed_from["finetune"] == STEPS + 2  # counted over both rounds
    first = f"{job.cells[0].fraction} round 1 step"
    assert not any(first in line for line in logs)  # the interrupted cell's first round is not trained again


def test_unreadable_checkpoint_is_reported_and_the_stage_starts_over(csi_job, capsys):
    job, reference = csi_job
    _fresh(job)
    path = Path(job.checkpoint_dir) / f"pretrain-{job.pretrain.key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    logs: list[str] = []
    results = run_job(job, Hooks(log=logs.append))
    assert any(str(path) in line and "unreadable" in line for line in logs)
    assert _numbers(results) == _numbers(reference)
    assert results[0].resumed_from == {}


def test_truncated_cached_pretraining_is_trained_again(csi_job):
    job, reference = csi_job
    cached = Path(job.pretrain.path)
    cached.write_bytes(cached.read_bytes()[:100])
    logs: list[str] = []
    results = run_job(job, Hooks(log=logs.append))
    assert any(str(cached) in line and "unreadable" in line for line in logs)
    assert results[0].pretrain_reused is False and _numbers(results) == _numbers(reference)
    assert torch.load(cached, weights_only=True)["key"] == job.pretrain.key


def test_checkpoint_of_another_stage_is_not_trusted(tmp_path):
    logs: list[str] = []
    mine = StageCheckpoint(tmp_path / "a.pt", identity={"stage": "pretrain", "key": "k1"}, every_steps=2, every_seconds=60, log=logs.append)
    StageCheckpoint(tmp_path / "a.pt", identity={"stage": "pretrain", "key": "k2"}, every_steps=2, every_seconds=60).save({"step": 2}, {})
    assert mine.load() is None and "another stage" in logs[0]


def test_due_by_steps_by_time_and_at_the_end(tmp_path, monkeypatch):
    by_steps = StageCheckpoint(tmp_path / "s.pt", identity={}, every_steps=3, every_seconds=1e9)
    assert [s for s in range(1, 11) if by_steps.due(s, 10)] == [3, 6, 9, 10]
    clock = [100.0]
    monkeypatch.setattr("benchmark.checkpoints.time.monotonic", lambda: clock[0])
    by_time = StageCheckpoint(tmp_path / "t.pt", identity={}, every_steps=None, every_seconds=60)
    assert not by_time.due(10, 100)
    clock[0] += 61
    assert not by_time.due(15, 100)  # the clock is looked at every TIME_CHECK_STEPS (10) steps only
    assert by_time.due(20, 100)
    by_time.save({"step": 20}, {})
    assert not by_time.due(30, 100) and by_time.due(100, 100)
    by_time.start()  # the stage's steps begin: the interval counts from here
    clock[0] += 59
    assert not by_time.due(40, 100)


def test_rng_capture_and_restore_round_trip():
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(1)
    state = capture_rng({"g": generator})
    first = (torch.rand(3), torch.rand(2, generator=generator))
    restore_rng(state, {"g": generator})
    assert all(torch.equal(a, b) for a, b in zip(first, (torch.rand(3), torch.rand(2, generator=generator))))
