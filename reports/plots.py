"""Figures of the report (matplotlib's object API on the Agg canvas: no pyplot state, no display).
Every figure is written as PNG (embedded in the HTML) and SVG (linked)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from reports.tables import Table


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, folder: Path, stem: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"png": folder / f"{stem}.png", "svg": folder / f"{stem}.svg"}
    fig.savefig(paths["png"])
    fig.savefig(paths["svg"])
    return paths


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def label_efficiency(table: Table, folder: Path) -> dict[str, Path] | None:
    """Metric vs labelled cases, one line per configuration, error bars = std over splits."""
    fig = _figure()
    ax = fig.add_subplot()
    drawn = 0
    for row in table.rows:
        points = []
        for fraction in table.fractions:
            cell = table.cells[(row.label, fraction)]
            if cell.status != "ok":
                continue
            try:
                x = float(str(table.n_labeled.get(fraction)).split("–")[0])
            except ValueError:
                continue
            points.append((x, cell.mean, cell.std if np.isfinite(cell.std) else 0.0))
        if not points:
            continue
        points.sort()
        xs, ys, es = zip(*points)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, linestyle="--" if row.is_scratch else "-", label=row.label)
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("labelled training cases")
    ax.set_ylabel(f"{table.metric} ({'higher' if table.higher_is_better else 'lower'} is better)")
    ax.set_title(f"{table.task}: label efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, folder, f"{slug(table.task)}-label-efficiency")


def per_case(table: Table, folder: Path) -> dict[str, Path] | None:
    """Box + strip plot of the per-case values (per-split values for set-level metrics), one panel per fraction."""
    fractions = [f for f in table.fractions if any(table.cells[(r.label, f)].status == "ok" for r in table.rows)]
    if not fractions:
        return None
    labels = [r.label for r in table.rows]
    fig = _figure(width=7.0, height=max(2.5, 0.35 * len(labels) * len(fractions) + 1.2))
    axes = fig.subplots(len(fractions), 1, squeeze=False)[:, 0]
    rng = np.random.default_rng(0)
    for ax, fraction in zip(axes, fractions):
        data, names = [], []
        for label in labels:
            cell = table.cells[(label, fraction)]
            values = cell.values["value"].dropna().to_numpy() if cell.status == "ok" else np.array([])
            data.append(values)
            names.append(label)
        positions = np.arange(len(names))
        ax.boxplot([d if len(d) else [np.nan] for d in data], positions=positions, orientation="horizontal", widths=0.6, showfliers=False)
        for pos, values in zip(positions, data):
            ax.scatter(values, pos + rng.uniform(-0.15, 0.15, len(values)), s=8, alpha=0.6)
        ax.set_yticks(positions, names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{table.task}, {table.column_label(fraction)}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel(f"{table.metric} per {'test case' if table.scope == 'case' else 'split'}")
    return _save(fig, folder, f"{slug(table.task)}-per-case")


def validation_curves(curves: pd.DataFrame, table: Table, folder: Path) -> dict[str, Path] | None:
    """Validation metric vs step per configuration (mean over its cells), when curves.csv exists."""
    if curves is None or not len(curves):
        return None
    by_row = {cid: row.label for row in table.rows for cid in row.cell_ids}
    data = curves[curves["cell_id"].isin(by_row)]
    if not len(data):
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for (metric, label), group in data.assign(row=data["cell_id"].map(by_row)).groupby(["metric", "row"]):
        mean = group.groupby("step")["value"].mean()
        ax.plot(mean.index, mean.values, label=f"{label} {metric}")
    ax.set_xlabel("step")
    ax.set_ylabel("validation value")
    ax.set_title(f"{table.task}: validation curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, folder, f"{slug(table.task)}-validation")


def critical_difference(mean_ranks: pd.Series, nemenyi: pd.DataFrame, folder: Path, *, name: str, cd: float) -> dict[str, Path]:
    """Critical-difference diagram of one backbone's ranking (scikit-posthocs): methods joined by a bar are not
    significantly different; the title gives the Nemenyi critical difference."""
    import scikit_posthocs as sp

    fig = _figure(width=7.0, height=max(2.5, 0.3 * len(mean_ranks) + 1.5))
    ax = fig.add_subplot()
    sp.critical_difference_diagram(mean_ranks, nemenyi, ax=ax, label_fmt_left="{label} ({rank:.2f})  ",
                                   label_fmt_right="  ({rank:.2f}) {label}", text_h_margin=0.3)
    ax.set_title(f"{name}: critical difference {cd:.2f} (Friedman + Nemenyi, α = 0.05)", fontsize=9)
    return _save(fig, folder, f"critical-difference-{slug(name)}")


def rank_stability(share: pd.DataFrame, folder: Path, n_boot: int, *, name: str) -> dict[str, Path]:
    """Heat map: share of bootstrap draws putting each method at each overall rank."""
    fig = _figure(width=7.0, height=max(2.5, 0.35 * len(share) + 1.2))
    ax = fig.add_subplot()
    image = ax.imshow(share.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(share.shape[1]), [str(c) for c in share.columns])
    ax.set_yticks(range(share.shape[0]), list(share.index), fontsize=7)
    for i in range(share.shape[0]):
        for j in range(share.shape[1]):
            v = share.iat[i, j]
            if v >= 0.005:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    ax.set_xlabel("overall rank")
    ax.set_title(f"{name}: ranking stability, {n_boot} bootstrap resamples of the test cases", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, folder, f"rank-stability-{slug(name)}")
