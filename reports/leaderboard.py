"""Small entry points kept for callers of the first leaderboard: tables as strings, paired differences,
and ``write_leaderboard`` (now a wrapper around :func:`reports.build_report` for one folder)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.load import runs_from_frames
from reports.render import delta_text
from reports.tables import build_tables


def _tables(results: pd.DataFrame, cells: pd.DataFrame, metric: str | None, test: str, holm: bool = True):
    runs = runs_from_frames(results, cells)
    tables = build_tables(runs, test=test, holm=holm, metrics="all" if metric else "primary")
    return [t for t in tables if (t.metric == metric if metric else t.primary)]


def leaderboard_tables(results: pd.DataFrame, cells: pd.DataFrame, *, metric: str | None = None, test: str = "ttest") -> dict[str, pd.DataFrame]:
    """task -> table (index: configuration labels, columns: "fraction (n=N)", values: "mean (std)" strings).

    ``metric``: the metric of every task's table; None: each task's main metric."""
    out = {}
    for table in _tables(results, cells, metric, test):
        frame = pd.DataFrame([[table.cells[(r.label, f)].text for f in table.fractions] for r in table.rows],
                             index=[r.label for r in table.rows], columns=[table.column_label(f) for f in table.fractions])
        frame.index.name = "method (backbone)"
        out[table.task] = frame
    return out


def paired_tables(results: pd.DataFrame, cells: pd.DataFrame, *, metric: str | None = None, test: str = "wilcoxon",
                  holm: bool = True) -> dict[str, pd.DataFrame]:
    """task -> "Δ +0.031 (p=0.02, n=6)" per non-scratch configuration and fraction, against the scratch row of the
    same backbone and fine-tuning settings, paired over per-split means (≥ 3 splits) or matched test cases (set-level
    metrics: matched splits); p Holm-corrected per table unless ``holm=False``."""
    out = {}
    for table in _tables(results, cells, metric, test, holm):
        rows = [r for r in table.rows if not r.is_scratch and any(table.cells[(r.label, f)].vs_scratch for f in table.fractions)]
        if not rows:
            continue
        frame = pd.DataFrame([[delta_text(table.cells[(r.label, f)]) or "—" for f in table.fractions] for r in rows],
                             index=[r.label for r in rows], columns=list(table.fractions))
        frame.index.name = f"method (backbone) vs {table.baseline}"
        out[table.task] = frame
    return out


def write_leaderboard(folder: Path, *, title: str, test: str = "ttest", holm: bool = True) -> tuple[Path, Path]:
    """The full report of one run folder, written into it; returns (leaderboard.md, leaderboard.html)."""
    from reports.build import build_report

    paths = build_report([Path(folder)], out_dir=Path(folder), title=title, test=test, holm=holm)
    return paths["markdown"], paths["leaderboard_html"]
