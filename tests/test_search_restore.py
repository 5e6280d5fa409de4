"""The search's bookkeeping: a configuration proposed twice is evaluated once, resources of a trial that trains
with DDP, an interrupted search that continues (Tuner.restore) without repeating finished trials, and DDP inside
search trials (Ray Train in a Ray Tune trial)."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from benchmark import ray_runner
from benchmark.cli import main


# ---- duplicates (no Ray) -------------------------------------------------------------------------------------
def test_a_configuration_proposed_twice_is_evaluated_once(tmp_path):
    calls = []

    def evaluate(score):
        def run():
            calls.append(score)
            return score
        return run

    folder = tmp_path / "finished"
    first = ray_runner.evaluate_once({"n": 4, "m": 2}, folder=folder, trial="t0", evaluate=evaluate(0.5))
    again = ray_runner.evaluate_once({"m": 2, "n": 4}, folder=folder, trial="t3", evaluate=evaluate(0.9))  # same point, other order
    other = ray_runner.evaluate_once({"n": 8, "m": 2}, folder=folder, trial="t4", evaluate=evaluate(0.7))
    assert (first, again, other) == ((0.5, None), (0.5, "t0"), (0.7, None)) and calls == [0.5, 0.7]

    def fails():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):  # a failed (or early-stopped) trial leaves no record: the point is evaluated again
        ray_runner.evaluate_once({"n": 16}, folder=folder, trial="t5", evaluate=fails)
    assert ray_runner.evaluate_once({"n": 16}, folder=folder, trial="t6", evaluate=evaluate(0.1)) == (0.1, None)


def test_concurrent_duplicates_wait_for_the_first_instead_of_training_twice(tmp_path):
    calls, out = [], {}

    def slow():
        calls.append(1)
        time.sleep(0.5)
        return 0.25

    threads = [threading.Thread(target=lambda t=t: out.setdefault(t, ray_runner.evaluate_once(
        {"gamma": 0.5}, folder=tmp_path, trial=t, evaluate=slow))) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and sorted(out.values(), key=str) == sorted([(0.25, None), (0.25, "a" if out["b"][1] else "b")], key=str)


def test_tuning_rows_say_which_trial_a_duplicate_repeats():
    def result(trial_id, score, **metrics):
        history = pd.DataFrame({"validation_score": [score]})
        return SimpleNamespace(metrics={"trial_id": trial_id, "time_total_s": 1.0, "done": True, **metrics}, metrics_dataframe=history,
                               config={"tuned": {"n": 4}, "n": 4}, error=None)

    grid = [result("aa", 0.5, best_validation_score=0.5), result("bb", 0.3), result("cc", 0.5, best_validation_score=0.5, duplicate_of="aa")]
    rows = ray_runner._trial_rows("csi-unet2d-brats", grid)  # bb: stopped by ASHA before its last report (Tune still says done)
    assert [(r["trial"], r["status"], r["duplicate_of"]) for r in rows] == [(0, "done", ""), (1, "stopped early", ""), (2, "duplicate", 0)]
    assert rows[2]["validation_score"] == 0.5


# ---- resources of a trial that trains with DDP (no Ray cluster) ----------------------------------------------
def test_a_ddp_trial_holds_no_cpu_so_its_train_workers_fit_a_small_cluster():
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    cluster = {"CPU": 2.0}
    one = ray_runner.trial_resources(num_workers=1, cpus_per_worker=1.0, gpus_per_worker=0.0)
    assert resource_dict_to_pg_factory(one).required_resources["CPU"] == 1.0
    ddp = resource_dict_to_pg_factory(ray_runner.trial_resources(num_workers=2, cpus_per_worker=1.0, gpus_per_worker=0.0))
    assert ddp.required_resources.get("CPU", 0.0) == 0.0 and ddp.required_resources.get("GPU", 0.0) == 0.0  # Tune accepts it
    # the trial's own CPU + 2 workers x 1 CPU fit 2 cores, one trial at a time (no Train run waits on another's workers)
    assert ddp.required_resources.get("CPU", 0.0) + 2 * 1.0 <= cluster["CPU"]
    assert ray_runner.default_concurrency(cluster=cluster, num_workers=2, cpus_per_worker=1.0, gpus_per_worker=0.0) == 1
    assert ray_runner.default_concurrency(cluster={"CPU": 16.0, "GPU": 8.0}, num_workers=2, cpus_per_worker=1.0, gpus_per_worker=1.0) == 4
    assert ray_runner.default_concurrency(cluster={"CPU": 1.0}, num_workers=4, cpus_per_worker=1.0, gpus_per_worker=0.0) == 1


# ---- Ray end to end ------------------------------------------------------------------------------------------
def _argv(tmp_path, *extra):
    return ["--methods", "inpainting", "--tasks", "brats", "--profile", "tiny", "--fractions", "100%", "--run-name", "r",
            "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"), "--no-dashboard", *extra]


@pytest.mark.slow  # ~110 s on 2 cores
def test_an_interrupted_search_continues_without_repeating_finished_trials(tmp_path, capsys):
    """Ctrl-C once a trial has finished: Tune saves the experiment and the run stops (no final cell on a partial
    search); the same command again restores it, runs only the trials not finished, and the final cells use the best."""
    ray_runner.shutdown()
    argv = _argv(tmp_path, "--tune", "4", "--max-concurrent-trials", "1")
    experiment = tmp_path / "out" / "tune" / "inpainting-unet2d-brats"
    records = experiment.with_name(experiment.name + ".finished")

    def interrupt_after_a_finished_trial():
        while not list(records.glob("*.json")):
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends; Tune's handler stops the search and saves it

    try:
        threading.Thread(target=interrupt_after_a_finished_trial, daemon=True).start()
        assert main(argv) == 130  # as after Ctrl-C
        interrupted_at = time.time()
        assert "run the same command again to continue" in capsys.readouterr().err
        assert not (tmp_path / "out" / "tuning.csv").exists() and not (tmp_path / "out" / "cells.csv").exists()
        finished = {json.loads(p.read_text())["trial"] for p in records.glob("*.json")}
        assert 1 <= len(finished) < 4

        assert main(argv) == 0  # the same command
        tuning = pd.read_csv(tmp_path / "out" / "tuning.csv", keep_default_na=False)
        assert sorted(tuning.trial) == [0, 1, 2, 3] and set(tuning.status) <= {"done", "stopped early", "duplicate"}
        ran_again = set()
        for trial_dir in experiment.iterdir():
            if trial_dir.is_dir() and (trial_dir / "result.json").exists():
                stamps = [json.loads(line)["timestamp"] for line in (trial_dir / "result.json").read_text().splitlines() if line]
                if max(stamps) > interrupted_at:
                    ran_again.add(trial_dir.name)
        assert ran_again and not ran_again & finished, (ran_again, finished)
        best = json.loads(tuning.loc[pd.to_numeric(tuning.validation_metric).idxmax(), "params"])
        cells = pd.read_csv(tmp_path / "out" / "cells.csv", keep_default_na=False)
        final = cells[cells.method == "inpainting"]
        assert set(final.status) == {"done"} and all(json.loads(p) == best for p in final.tuned_params) and set(final.search_budget) == {4}
    finally:
        ray_runner.shutdown()


@pytest.mark.slow  # ~130 s on 2 cores
def test_search_trials_train_with_ddp_through_ray_train(tmp_path):
    """--tune 2 --num-workers 2 on 2 cores: each trial is a Ray Train run of 2 DDP workers (the trial holds no CPU,
    else it would deadlock), reporting the validation score to Tune; the final cells run with DDP too."""
    ray_runner.shutdown()
    try:
        assert main(_argv(tmp_path, "--tune", "2", "--num-workers", "2", "--cpus-per-worker", "1")) == 0
        tuning = pd.read_csv(tmp_path / "out" / "tuning.csv", keep_default_na=False)
        assert len(tuning) == 2 and set(tuning.status) <= {"done", "stopped early", "duplicate"} and "done" in set(tuning.status)
        assert (pd.to_numeric(tuning.validation_metric) > 0).all()  # scores reached Tune from the Train workers (TuneReportCallback)
        experiment = tmp_path / "out" / "tune" / "inpainting-unet2d-brats"
        finals = [json.loads(line) for d in experiment.iterdir() if (d / "result.json").exists()
                  for line in (d / "result.json").read_text().splitlines() if line and "best_validation_score" in json.loads(line)]
        done = tuning[tuning.status == "done"]
        assert len(finals) == len(done) and {f["world_size"] for f in finals} == {2}  # trained by 2 DDP workers
        assert sorted(f["best_validation_score"] for f in finals) == sorted(pd.to_numeric(done.validation_metric))
        train_runs = {p.name for p in (tmp_path / "out" / "tune" / "train").iterdir()}
        assert {f"inpainting-unet2d-brats-s0-trial{i}" for i, s in zip(tuning.trial, tuning.status) if s != "duplicate"} <= train_runs
        cells = pd.read_csv(tmp_path / "out" / "cells.csv", keep_default_na=False)
        assert set(cells.status) == {"done"} and set(cells.method) == {"inpainting", "scratch"}
        assert len(list((tmp_path / "out" / "ray" / "train").iterdir())) == len(cells)  # one Train run per final Job (one cell each)
    finally:
        ray_runner.shutdown()
