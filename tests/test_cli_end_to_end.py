"""The CLI end to end with Ray on the built-in data ("tiny" profile: 2 steps per stage)."""
from __future__ import annotations

import pandas as pd
import pytest

from benchmark.cli import main


@pytest.fixture(scope="module")
def ray_session():
    yield
    from benchmark import ray_runner

    ray_runner.shutdown()


def _run(tmp_path, run_name, *extra):
    argv = ["--methods", "csi,dae,csm", "--tasks", "brats,btcv", "--fractions", "100%,25%", "--profile", "tiny",
            "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / run_name), "--run-name", run_name,
            "--no-dashboard", *extra]
    return main(argv)


def test_cli_runs_every_stage_on_ray_and_reuses_pretraining(tmp_path, ray_session, capsys):
    """Pretrain -> fine-tune at 2 fractions -> evaluate, for every method, scratch per backbone, n/a cells; then cache reuse."""
    assert _run(tmp_path, "first") == 0
    out = capsys.readouterr().out
    assert "leaderboard:" in out

    cells = pd.read_csv(tmp_path / "first" / "cells.csv", keep_default_na=False)
    results = pd.read_csv(tmp_path / "first" / "results.csv")
    done = cells[cells.status == "done"]
    expected = {("csi", "unet2d"), ("dae", "swin_unetr"), ("scratch", "unet2d"), ("scratch", "swin_unetr")}
    for task in ("brats", "btcv"):
        assert expected <= set(map(tuple, done[done.task == task][["method", "backbone"]].values))
    assert ("csm", "vit") in set(map(tuple, done[done.task == "brats"][["method", "backbone"]].values))
    na = cells[(cells.task == "btcv") & (cells.method == "csm")]
    assert set(na.status) == {"n/a"} and "series" in na.reason.iloc[0]
    assert set(done.fraction) == {"100%", "25%"}
    dice = results[results["metric"].str.startswith("dice_")]
    assert len(dice) and dice["value"].between(0, 1).all()
    assert (results.loc[results["metric"].str.startswith("hd95_"), "value"].dropna() >= 0).all()  # mm; NaN: undefined (an empty mask)
    brats_metrics = set(results[results.task == "brats"].metric)
    assert {"dice_WT", "dice_TC", "dice_ET", "dice_mean"} <= brats_metrics
    # One row per test case and metric: 4 brats test cases (25% of 16), 3 btcv (25% of 12).
    csi_brats = results[(results.method == "csi") & (results.task == "brats") & (results.fraction == "100%") & (results.metric == "dice_mean")]
    assert sorted(csi_brats.case_id.unique()) == sorted(csi_brats.case_id) and len(csi_brats) == 4
    leaderboard = (tmp_path / "first" / "leaderboard.md").read_text()
    assert "csi (unet2d)" in leaderboard and "scratch (swin_unetr)" in leaderboard and "n/a" in leaderboard
    assert (tmp_path / "first" / "leaderboard.html").exists()
    # Only DAE's pretraining is shared across tasks (--pretrain-corpus auto: one corpus of brats + btcv, pretrained
    # once): one task's DAE Job trains it, the other's reuses it; every other method pretrains once per task.
    reused = done[done.pretrain_reused.astype(str).eq("True")]
    assert set(reused.method) == {"dae"} and reused.task.nunique() == 1
    dae = done[done.method == "dae"]
    assert dae.pretrain_hash.nunique() == 1 and set(dae.task) == {"brats", "btcv"}

    # A new run with the same settings reuses every cached pretraining.
    assert _run(tmp_path, "second", "--fractions", "100%") == 0
    second = pd.read_csv(tmp_path / "second" / "cells.csv", keep_default_na=False)
    pretrained = second[(second.status == "done") & (second.method != "scratch")]
    assert len(pretrained) and pretrained.pretrain_reused.astype(str).eq("True").all()
    assert set(pretrained.pretrain_hash) <= set(done.pretrain_hash)

    # Rerunning a finished run resumes: nothing left to do.
    capsys.readouterr()
    assert _run(tmp_path, "second", "--fractions", "100%") == 0
    assert "already done" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--methods", "csi,nope"], "unknown method 'nope'"),
        (["--tasks", "brats,nope"], "unknown task 'nope'"),
        (["--fractions", "150%"], "outside"),
        (["--seeds", "a"], "--seeds"),
        (["--hparam", "csi:pool_size"], "METHOD:KEY=VALUE"),
        (["--hparam", "csi.pool_size=7"], "csi:pool_size=7"),
        (["--methods", "csi", "--hparam", "csi:bogus=3"], "bogus"),
        (["--methods", "csi", "--hparam", "csi:pool_size=2"], "pool_size"),
        (["--backbone", "resnet999"], "unknown backbone"),
    ],
)
def test_cli_rejects_bad_arguments_before_any_compute(argv, message, tmp_path, capsys):
    """Bad names and values stop with exit code 2 and one message naming the value."""
    code = main([*argv, "--cache-dir", str(tmp_path), "--output", str(tmp_path / "out"), "--profile", "tiny"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_missing_or_empty_data_root(tmp_path, capsys):
    """--data-root that does not exist or is empty names the folder."""
    assert main(["--tasks", "brats", "--data-root", str(tmp_path / "missing"), "--cache-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--tasks", "brats", "--data-root", f"brats={tmp_path / 'empty'}", "--cache-dir", str(tmp_path)]) == 2
    assert "empty" in capsys.readouterr().err


def test_list_prints_every_registry(capsys):
    """--list prints one line per method, backbone, task and profile."""
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("csi", "dae", "csm", "scratch", "unet2d", "swin_unetr", "vit", "brats", "btcv", "smoke", "paper"):
        assert f"  {name} " in out


@pytest.mark.slow
def test_default_command_smoke_profile(tmp_path, ray_session):
    """The README's main command as a new user runs it (smoke profile, ~5 min on 2 cores): CSI beats scratch on BraTS."""
    argv = ["--methods", "csi,dae,csm", "--tasks", "brats,btcv", "--cache-dir", str(tmp_path / "cache"),
            "--output", str(tmp_path / "out"), "--no-dashboard"]
    assert main(argv) == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    dice = results[(results.metric == "dice_mean") & (results.task == "brats") & (results.fraction == "100%")]
    by_method = dice.groupby(["method", "backbone"]).value.mean()
    assert by_method[("csi", "unet2d")] > by_method[("scratch", "unet2d")]


def test_check_data_validates_without_training(tmp_path, capsys):
    """--check-data reads every file (even if an earlier check passed), reports, writes no results, exits 0;
    a corrupt file stops it with exit 2 and a message naming the file."""
    import shutil

    from benchmark.datasources import synthetic_root
    from tasks import get_task

    argv = ["--check-data", "--tasks", "btcv", "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "data OK: btcv" in out and "every file read" in out
    assert not (tmp_path / "out").exists()
    real = tmp_path / "real"
    shutil.copytree(synthetic_root(get_task("btcv"), tmp_path / "cache"), real)
    assert main(argv + ["--data-root", str(real)]) == 0
    capsys.readouterr()
    broken = sorted((real / "imagesTr").glob("*.nii.gz"))[0]
    broken.write_bytes(broken.read_bytes()[:200])  # truncated gzip
    assert main(argv + ["--data-root", str(real)]) == 2
    assert broken.name in capsys.readouterr().err


def test_cli_new_objectives_and_tasks_with_variants_folds_and_missing_series(tmp_path, ray_session):
    """Issue 4/5 paths through Ray at 2 steps per stage: a contrastive and a transformer objective, a method variant,
    a classification task (AUC), a segmentation task with surface metrics, 2 folds, missing series through CSM's
    series-aware input (the default version; the slow one adds MAE)."""
    _run_new_objectives(tmp_path, "dae,dae:cmcl=false,swav,csm",
                        hie_rows={("dae", "swin_unetr"), ("swav", "resnet_unet"), ("csm", "vit"), ("scratch", "resnet_unet")})


@pytest.mark.slow
def test_cli_new_objectives_every_backbone_with_variants_folds_and_missing_series(tmp_path, ray_session):
    _run_new_objectives(tmp_path, "dae,dae:cmcl=false,swav,mae,csm",
                        hie_rows={("dae", "swin_unetr"), ("swav", "resnet_unet"), ("mae", "swin_unetr"), ("csm", "vit"), ("scratch", "resnet_unet")})


def _run_new_objectives(tmp_path, methods: str, *, hie_rows: set[tuple[str, str]]) -> None:
    argv = ["--methods", methods, "--tasks", "prostate158,hie", "--fractions", "100%", "--folds", "2",
            "--missing-series", "0.5", "--profile", "tiny", "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
            "--run-name", "new", "--no-dashboard"]
    assert main(argv) == 0
    cells = pd.read_csv(tmp_path / "out" / "cells.csv", keep_default_na=False, na_values=[""])  # "n/a" is a status
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    done = cells[cells.status == "done"]
    assert set(done.fold) == {0, 1} and set(done.missing_series) == {0.5}
    hie = set(map(tuple, done[done.task == "hie"][["method", "backbone"]].values))
    assert hie_rows <= hie
    assert len(done[(done.task == "hie") & (done.method == "dae")].config_id.unique()) == 2  # dae and dae:cmcl=false
    assert {"dice_lesion", "masd", "nsd", "hd95_lesion"} <= set(results[results.task == "hie"].metric)
    prostate = results[results.task == "prostate158"]
    assert {"auc", "accuracy", "prob_positive"} <= set(prostate.metric)
    assert prostate[prostate.metric == "auc"].value.between(0, 1).all()  # stratified splits: both classes tested
    na = cells[(cells.task == "prostate158") & (cells.method == "swav")]
    assert set(na.status) == {"n/a"} and "2D" in na.reason.iloc[0]
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "dae (swin_unetr) missing-series 0.5 cmcl=False" in board and "`auc`" in board


@pytest.mark.slow
def test_issue4_command_smoke_profile(tmp_path, ray_session):
    """Every transformer and contrastive objective on BraTS in the smoke profile (~5 min on 2 cores)."""
    methods = ["dae", "mae", "swin_unetr_ssl", "csm", "mae3d", "swav", "simsiam"]
    argv = ["--methods", ",".join(methods), "--tasks", "brats", "--cache-dir", str(tmp_path / "cache"),
            "--output", str(tmp_path / "out"), "--no-dashboard"]
    assert main(argv) == 0
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    assert set(methods) <= set(cells[cells.status == "done"].method)
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert all(f"| {m} (" in board for m in methods)


def test_backbone_agnostic_objectives_run_on_vit(tmp_path, ray_session):
    """DAE, MAE and the Models-Genesis corruptions are not tied to one architecture: with --backbone vit every
    cell runs (none n/a), each transferring its pretrained weights strictly into the ViT."""
    argv = ["--methods", "dae,mae,inpainting,intensity_shift", "--backbone", "vit", "--tasks", "brats", "--profile", "tiny",
            "--fractions", "100%", "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"), "--no-dashboard"]
    assert main(argv) == 0
    cells = pd.read_csv(tmp_path / "out" / "cells.csv", keep_default_na=False)
    assert set(cells.status) == {"done"} and set(cells.backbone) == {"vit"}
    assert set(cells.method) == {"dae", "mae", "inpainting", "intensity_shift", "scratch"}


def test_search_picks_the_best_validation_configuration_for_the_final_cells(tmp_path, ray_session):
    """--tune 2 over two methods: their Ray Tune experiments run at once (one trial each at a time: the two share the
    2 cores), each trial drawn by its own method's Optuna from that method's declared space, the best by validation
    score is written to best_configs.json, and the final cells (every fraction) run with it."""
    import json

    import optuna
    import torch

    from search_spaces import get_space

    argv = ["--methods", "inpainting,pixel_shuffle", "--tasks", "brats", "--profile", "tiny", "--fractions", "100%,25%", "--tune", "2",
            "--max-concurrent-trials", "1", "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"), "--no-dashboard"]
    assert main(argv) == 0
    tuning = pd.read_csv(tmp_path / "out" / "tuning.csv")
    for method in ("inpainting", "pixel_shuffle"):
        trials = tuning[tuning.method == method]
        assert len(trials) == 2
        for params, suggested in zip(map(json.loads, trials.params), map(json.loads, trials.suggested)):  # its own space's points
            assert get_space(method)(optuna.trial.FixedTrial(suggested)) == params
    spans = {}  # when each experiment's trials reported: the experiments overlap in time (not one after another)
    for experiment in (tmp_path / "out" / "tune").iterdir():
        stamps = [json.loads(line)["timestamp"] for result in experiment.glob("*/result.json")
                  for line in result.read_text().splitlines() if line]
        if stamps:
            spans[experiment.name] = (min(stamps), max(stamps))
    (a_first, a_last), (b_first, b_last) = spans["inpainting-unet2d-brats"], spans["pixel_shuffle-unet2d-brats"]
    assert a_first < b_last and b_first < a_last, spans
    # each trial pretrained its own experiment's method with its sampled pretext parameters (with one Tune trainable
    # name for both Tuners, one experiment's trials ran the other's Job)
    pretrained = {(c["job"]["method"], c["job"]["method_config"]["grid_size"])
                  for c in (torch.load(p, weights_only=False, map_location="cpu") for p in (tmp_path / "cache" / "pretrained").glob("*.pt"))}
    assert pretrained == {(m, json.loads(p)["grid_size"]) for m, p in zip(tuning.method, tuning.params)}
    trials = tuning[tuning.method == "inpainting"]
    assert trials.params.nunique() == 2
    best = json.loads(trials.loc[trials.validation_metric.idxmax(), "params"])
    chosen = json.loads((tmp_path / "out" / "best_configs.json").read_text())["inpainting|unet2d|brats"]
    assert chosen["params"] == best and chosen["trials"] == 2
    cells = pd.read_csv(tmp_path / "out" / "cells.csv", keep_default_na=False)
    final = cells[cells.method == "inpainting"]
    assert set(final.status) == {"done"} and set(final.fraction) == {"100%", "25%"}
    assert all(json.loads(p) == best for p in final.tuned_params) and set(final.search_budget) == {2}
    pretext = {k: v for k, v in best.items() if not k.startswith(("pretrain_", "finetune_"))}
    assert all(json.loads(c)["method_config"][k] == v for c in final.config for k, v in pretext.items())
    scratch = cells[cells.method == "scratch"]
    assert set(scratch.search_budget) == {0}  # nothing to tune without --tune-finetune; said in the log


def test_unreachable_cluster_is_one_clear_error_within_seconds(tmp_path, capsys, monkeypatch):
    """--address of a cluster that does not answer (a stale 'auto' record, a stopped head) stops the run with exit
    code 2 and a message naming the address, within seconds instead of minutes of GCS time-outs."""
    import socket
    import time

    with socket.socket() as probe:  # a local port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from benchmark import ray_runner

    ray_runner.shutdown()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # what 'auto' would find recorded
    for address in (f"127.0.0.1:{port}", "auto"):
        start = time.perf_counter()
        argv = ["--methods", "scratch", "--tasks", "brats", "--profile", "tiny", "--fractions", "100%", "--address", address,
                "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out")]
        assert main(argv) == 2
        assert f"127.0.0.1:{port}" in capsys.readouterr().err and time.perf_counter() - start < 60
