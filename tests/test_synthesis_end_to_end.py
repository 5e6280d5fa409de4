"""The issue's must-hold command end to end with Ray on the built-in data, smoke profile (~4 min on 2 cores: slow)."""
from __future__ import annotations

import pandas as pd
import pytest

from benchmark.cli import main


@pytest.mark.slow
def test_brats_synthesis_l1_vs_coper_swav_vgg_smoke(tmp_path, capsys):
    from benchmark import ray_runner

    argv = ["--methods", "l1,l1+coper", "--tasks", "brats_synthesis", "--no-dashboard",
            "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"), "--run-name", "synth"]
    try:
        assert main(argv) == 0
    finally:
        ray_runner.shutdown()
    cells = pd.read_csv(tmp_path / "out" / "cells.csv", keep_default_na=False)
    assert set(cells.status) == {"done"} and set(cells.method) == {"l1", "l1+coper"}
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert {"psnr", "ssim", "coper", "lpips", "dice_synth_mean"} <= set(results.metric)
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    for metric in ("psnr", "ssim", "coper", "dice_synth_mean"):
        rows = board[(board.metric == metric) & (board.fraction == "100%")]
        assert set(rows.method) == {"l1", "l1+coper"}
        assert rows.published_value.notna().all(), metric  # CoPer Table III beside ours
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "34.152" in md and "34.405" in md  # Table III PSNR of l1 and SwAV-VGG
