"""The leaderboard (reports/leaderboard.py) on tables written by the store (planning and store: tests/test_plan_job_store.py)."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from benchmark.store import CELL_COLUMNS, RESULT_COLUMNS, ResultStore
from test_plan_job_store import _record, _rows  # noqa: E402  (the store fixtures the leaderboard reads)
from reports.leaderboard import leaderboard_tables, write_leaderboard


# ---- ResultStore ---------------------------------------------------------------------------------------
def _write_tables(folder: Path) -> None:
    rows = []
    # csi 100%: seed 0 cases [0.5, 0.7] -> 0.6, seed 1 cases [0.7, 0.9, 1.0] -> 0.8667;
    # mean over seeds 0.7333 (not the pooled case mean 0.76), std over seeds 0.1886. csi 25%: seed 0 only -> 0.2.
    for seed, fraction, values in [(0, "100%", [0.5, 0.7]), (0, "25%", [0.1, 0.3]), (1, "100%", [0.7, 0.9, 1.0])]:
        rows += [{"run": "r", "method": "csi", "backbone": "unet2d", "task": "btcv", "fraction": fraction, "n_labeled": 9, "seed": seed,
                  "fold": 0, "case_id": f"c{i}", "metric": "dice_mean", "value": v, "cell_id": f"csi|{fraction}|{seed}"} for i, v in enumerate(values)]
        rows += [{"run": "r", "method": "csi", "backbone": "unet2d", "task": "btcv", "fraction": fraction, "n_labeled": 9, "seed": seed,
                  "fold": 0, "case_id": f"c{i}", "metric": "dice_spleen", "value": 0.0, "cell_id": f"csi|{fraction}|{seed}"} for i in range(len(values))]
    rows += [{"run": "r", "method": "scratch", "backbone": "unet2d", "task": "btcv", "fraction": f, "n_labeled": 9, "seed": 0, "fold": 0,
              "case_id": "c0", "metric": "dice_mean", "value": v, "cell_id": f"scratch|{f}|0"} for f, v in (("100%", 0.25), ("25%", 0.125))]
    pd.DataFrame(rows, columns=RESULT_COLUMNS).to_csv(folder / "results.csv", index=False)
    cells = []
    for method, backbone, fraction, seed, status, reason in [
        ("csi", "unet2d", "100%", 0, "done", ""), ("csi", "unet2d", "25%", 0, "done", ""), ("csi", "unet2d", "100%", 1, "done", ""),
        ("scratch", "unet2d", "100%", 0, "done", ""), ("scratch", "unet2d", "25%", 0, "done", ""),
        ("csm", "vit", "100%", 0, "n/a", "needs >= 2 series"), ("csm", "vit", "25%", 0, "n/a", "needs >= 2 series"),
    ]:
        cells.append({**{c: "" for c in CELL_COLUMNS}, "run": "r", "cell_id": f"{method}|{fraction}|{seed}", "method": method,
                      "backbone": backbone, "task": "btcv", "fraction": fraction, "n_labeled": 9, "seed": seed, "fold": 0,
                      "status": status, "reason": reason, "label_aware": False})
    pd.DataFrame(cells, columns=CELL_COLUMNS).to_csv(folder / "cells.csv", index=False)


def test_leaderboard_means_and_na(tmp_path):
    """Case means per seed, then the mean (std) over seeds; n/a cells are shown as n/a with their reason."""
    _write_tables(tmp_path)
    md_path, html_path = write_leaderboard(tmp_path, title="Test board")
    md = md_path.read_text()
    assert md.startswith("# Test board")
    main = md.split("### btcv — dice_mean (main metric)")[1].split("\n\n")[1]  # the main metric's table
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
             for line in main.splitlines() if line.startswith("| ") and "method (backbone)" not in line}
    assert lines["csi (unet2d)"] == ["**0.733 (0.189)**", "**0.200**"]  # best of its column: bold
    assert lines["scratch (unet2d)"] == ["0.250", "0.125"]
    assert lines["csm (vit)"] == ["n/a", "n/a"]
    assert re.search(r"\| method \(backbone\) \| 100%[^|]*\| 25%[^|]*\|", md)  # largest fraction first
    assert "csm (vit) on btcv: n/a – needs >= 2 series" in md
    html = html_path.read_text()
    assert "0.733 (0.189)" in html and "Test board" in html


def test_leaderboard_tables_other_metric_and_order(tmp_path):
    """Any metric can be tabulated; fractions are ordered largest first."""
    _write_tables(tmp_path)
    results = pd.read_csv(tmp_path / "results.csv")
    cells = pd.read_csv(tmp_path / "cells.csv", keep_default_na=False, na_values=[""])
    tables = leaderboard_tables(results, cells, metric="dice_spleen")
    table = tables["btcv"]
    assert [c.split(" ")[0] for c in table.columns] == ["100%", "25%"]  # headers may add e.g. "(n=9)"
    hundred = table.columns[0]
    assert table.loc["csi (unet2d)", hundred] == "0.000 (0.000)"
    assert table.loc["scratch (unet2d)", hundred] == "—"  # no dice_spleen rows for scratch


def test_leaderboard_from_store_round_trip(tmp_path):
    """A table written by ResultStore produces the expected leaderboard (mean over test cases)."""
    store = ResultStore(tmp_path, "run")
    store.add_cell(_record(cell_id="a"), _rows([0.2, 0.4, 0.9]))
    store.add_cell(_record(cell_id="b", status="failed", reason="boom", fraction="25%"), [])
    md = write_leaderboard(tmp_path, title="t")[0].read_text()
    assert "| csi (unet2d) | **0.500** | failed |" in md
    assert "boom" in md


def test_leaderboard_with_only_na_cells(tmp_path):
    """A run whose cells are all n/a (no results.csv) still gets a leaderboard listing why."""
    store = ResultStore(tmp_path, "run")
    store.add_cell(_record(cell_id="x", status="n/a", reason="needs >= 2 series", method="csm"), [])
    md = write_leaderboard(tmp_path, title="t")[0].read_text()
    assert "| csm (unet2d) | n/a |" in md and "needs >= 2 series" in md


def test_paired_table_against_scratch_of_same_backbone():
    """Δ = mean over matched (seed, fold, case) of method − scratch, with the Wilcoxon p-value."""
    from reports.leaderboard import paired_tables

    rows, cells = [], []
    for method, values in (("csi", [0.9, 0.8, 0.7, 0.95, 0.85, 0.9]), ("scratch", [0.5, 0.6, 0.4, 0.7, 0.6, 0.5])):
        cid = f"{method}|100%"
        cells.append({**{c: "" for c in CELL_COLUMNS}, "cell_id": cid, "method": method, "backbone": "unet2d", "task": "brats",
                      "fraction": "100%", "n_labeled": 9, "seed": 0, "fold": 0, "status": "done", "label_aware": False, "config_id": "x"})
        rows += [{"run": "r", "method": method, "backbone": "unet2d", "task": "brats", "fraction": "100%", "n_labeled": 9, "seed": 0,
                  "fold": 0, "case_id": f"c{i}", "metric": "dice_mean", "value": v, "cell_id": cid} for i, v in enumerate(values)]
    table = paired_tables(pd.DataFrame(rows, columns=RESULT_COLUMNS), pd.DataFrame(cells, columns=CELL_COLUMNS))["brats"]
    assert list(table.index) == ["csi (unet2d)"]
    from scipy.stats import wilcoxon

    p = wilcoxon([0.4, 0.2, 0.3, 0.25, 0.25, 0.4]).pvalue
    assert table.iloc[0, 0] == f"Δ +0.300 (p={p:.2g}, n=6)"
