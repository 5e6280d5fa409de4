"""Leaderboard from the tidy results table: per task, one row per method, one column per label fraction.

Every number is derived from ``results.csv`` (and the cell records for n/a / failed cells):
per-case values -> mean over test cases per split (seed x fold) -> mean over splits (std shown
when there are several). A second table per task compares every method with the scratch
baseline of its backbone: mean paired difference over test cases matched by (seed, fold,
case) and the Wilcoxon signed-rank p-value (scipy), as the papers' paired tests do.

The metric is chosen per task (``primary_metric``): ``dice_mean`` for segmentation tasks;
``auc`` for case-level classification tasks (tasks/classification.py), which have no Dice. AUC
is a property of a whole test set (one row per split, case id ``__set__``), so it is averaged
over splits only, and it has no paired per-case table.
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from benchmark.store import write_atomic

PRIMARY_METRIC = "dice_mean"
CLASSIFICATION_METRIC = "auc"  # set-level, written by benchmark.train.evaluate_classifier
SET_CASE_ID = "__set__"  # tasks.classification.SET_CASE_ID (not imported: the report reads tables, not tasks)


def primary_metric(results: pd.DataFrame, task: str) -> str:
    """``dice_mean`` if the task has such rows, else ``auc`` if it has those, else ``dice_mean``."""
    if not len(results) or "metric" not in results:
        return PRIMARY_METRIC
    metrics = set(results.loc[results["task"] == task, "metric"])
    return PRIMARY_METRIC if PRIMARY_METRIC in metrics or CLASSIFICATION_METRIC not in metrics else CLASSIFICATION_METRIC


def metric_note(metric: str) -> str:
    """How the numbers of one task's table are made, for the report."""
    if metric == CLASSIFICATION_METRIC:
        return ("Metric: `auc` (ROC AUC of the positive class over each split's test set; one-vs-rest macro for more than "
                "two classes), mean over splits; a split whose test set holds one class has no AUC and is left out.")
    return f"Metric: `{metric}`, mean over the test cases of each split, then over splits."


def _fraction_order(labels) -> list[str]:
    def key(label: str):
        if label.endswith("%"):
            return (0, -float(label[:-1]))
        return (1, -int(label.split()[0]))

    return sorted(set(labels), key=key)


def leaderboard_tables(results: pd.DataFrame, cells: pd.DataFrame, *, metric: str | None = None) -> dict[str, pd.DataFrame]:
    """task -> table (index: "method (backbone)", columns: fractions, values: "mean" or "mean (std)" strings).

    ``metric``: the metric of every task's table; None: each task's ``primary_metric``."""
    tables: dict[str, pd.DataFrame] = {}
    tasks = sorted(set(cells["task"]) if len(cells) else set())
    for task in tasks:
        task_metric = metric or primary_metric(results, task)
        task_cells = cells[cells["task"] == task]
        fractions = _fraction_order(task_cells["fraction"])
        rows: dict[str, dict[str, str]] = {}
        if "config_id" not in task_cells:
            task_cells = task_cells.assign(config_id="")
        task_cells = task_cells.assign(config_id=task_cells["config_id"].map(lambda v: "" if pd.isna(v) else str(v)))
        labelled = {key: _row_label(*key[:2], group) for key, group in task_cells.groupby(["method", "backbone", "config_id"], sort=False)}
        configs_per_label = pd.Series([label for label in labelled.values()]).value_counts()
        for (method, backbone, config_id), group in task_cells.groupby(["method", "backbone", "config_id"], sort=False):
            name = labelled[(method, backbone, config_id)]
            if configs_per_label[name] > 1:
                name += f" cfg {config_id}"  # settings the label does not show apart (see cells.csv config)
            if group["label_aware"].astype(str).eq("True").any():
                name += " [label-aware]"
            rows[name] = {}
            for fraction in fractions:
                statuses = group[group["fraction"] == fraction]
                if statuses.empty:
                    continue
                if (statuses["status"] == "n/a").all():
                    rows[name][fraction] = "n/a"
                    continue
                values = results[results["cell_id"].isin(statuses["cell_id"]) & (results["metric"] == task_metric)] if "cell_id" in results \
                    else results.iloc[0:0]
                if values.empty:
                    rows[name][fraction] = "failed" if (statuses["status"] == "failed").any() else "–"
                    continue
                # Mean over test cases per split (seed x fold), then mean (std) over splits, as the papers report.
                keys = [k for k in ("seed", "fold") if k in values]
                per_split = values.groupby(keys)["value"].mean()
                text = f"{per_split.mean():.3f}"
                if len(per_split) > 1:
                    text += f" ({per_split.std(ddof=1):.3f})"
                rows[name][fraction] = text
        table = pd.DataFrame.from_dict(rows, orient="index", columns=fractions).fillna("–")
        table = table.loc[sorted(table.index, key=_row_order(list(table.index)))]
        n_labeled = task_cells.drop_duplicates("fraction").set_index("fraction")["n_labeled"]
        table.columns = [f"{f} (n={int(n_labeled[f])})" for f in fractions]
        table.index.name = "method (backbone)"
        tables[task] = table
    return tables


def paired_tables(results: pd.DataFrame, cells: pd.DataFrame, *, metric: str | None = None) -> dict[str, pd.DataFrame]:
    """task -> table of "Δ +0.031 (p=0.02)" per method row and fraction, against scratch on the same backbone.

    ``metric``: None: each task's ``primary_metric``. Tasks whose metric is set-level only (AUC) are skipped:
    there are no per-case values to pair."""
    from scipy.stats import wilcoxon

    if not len(results) or "cell_id" not in results or not len(cells):
        return {}
    done = cells[cells["status"] == "done"]
    per_task = {task: metric or primary_metric(results, task) for task in set(results["task"])}
    values = results[results["metric"] == results["task"].map(per_task)]
    values = values[values["case_id"].astype(str) != SET_CASE_ID] if "case_id" in values else values
    values = values.merge(done[["cell_id", "config_id"]].astype({"config_id": str}), on="cell_id")
    tables = {}
    for task, task_values in values.groupby("task"):
        rows: dict[str, dict[str, str]] = {}
        fractions = _fraction_order(task_values["fraction"])
        task_cells = done[done["task"] == task].assign(config_id=lambda d: d["config_id"].astype(str))
        labels = {key: _row_label(*key[:2], g) for key, g in task_cells.groupby(["method", "backbone", "config_id"], sort=False)}
        for (method, backbone, config_id), group in task_values.groupby(["method", "backbone", "config_id"], sort=False):
            if method == "scratch":
                continue
            base = task_values[(task_values["method"] == "scratch") & (task_values["backbone"] == backbone)]
            name = labels.get((method, backbone, config_id), f"{method} ({backbone})")
            for fraction in fractions:
                keys = ["seed", "fold", "case_id"]
                pairs = group[group["fraction"] == fraction].merge(base[base["fraction"] == fraction], on=keys, suffixes=("", "_scratch"))
                if pairs.empty:
                    continue
                diff = pairs["value"] - pairs["value_scratch"]
                text = f"Δ {diff.mean():+.3f}"
                if len(diff) >= 2 and (diff != 0).any():
                    text += f" (p={wilcoxon(diff).pvalue:.2g}, n={len(diff)})"
                rows.setdefault(name, {})[fraction] = text
        if rows:
            table = pd.DataFrame.from_dict(rows, orient="index", columns=fractions).fillna("–")
            table = table.loc[sorted(table.index, key=_row_order(list(table.index)))]  # same order as the main table
            table.index.name = "method (backbone) vs scratch"
            tables[task] = table
    return tables


def _row_label(method: str, backbone: str, group: pd.DataFrame) -> str:
    """"method (backbone)" plus what sets this configuration apart: the fine-tuning augmentation, the
    missing-series share and the hyperparameters given with --hparam (e.g. an ablation, cmcl=False)."""
    name = f"{method} ({backbone})"
    augmentation = str(group["finetune_aug"].iloc[0]) if "finetune_aug" in group else ""
    if augmentation not in ("", "none", "nan"):
        name += f" + {augmentation}"
    missing = pd.to_numeric(group["missing_series"], errors="coerce").fillna(0).iloc[0] if "missing_series" in group else 0
    if missing:
        name += f" missing-series {missing:g}"  # CSM Table VII: incomplete series at fine-tuning and test
    overrides = _overrides(group["config"].iloc[0]) if "config" in group else {}
    if overrides:
        name += " " + ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    return name


def _overrides(config_json) -> dict:
    """The --hparam overrides recorded in a cell's config JSON (empty for the paper defaults)."""
    import json

    try:
        return dict(json.loads(config_json).get("hparams_overrides") or {})
    except (TypeError, ValueError, AttributeError):
        return {}


def _row_order(names: list[str]):
    """Group rows by backbone (in order of first appearance), scratch last within its backbone."""
    backbones = list(dict.fromkeys(n.split("(")[1].split(")")[0] for n in names))

    def key(name: str):
        backbone = name.split("(")[1].split(")")[0]
        return (backbones.index(backbone), name.startswith("scratch"), names.index(name))

    return key


def na_reasons(cells: pd.DataFrame) -> list[str]:
    if not len(cells):
        return []
    bad = cells[cells["status"].isin(["n/a", "failed"])].drop_duplicates(["method", "backbone", "task", "status", "reason"])
    return [f"{r.method} ({r.backbone}) on {r.task}: {r.status} – {r.reason}" for r in bad.itertuples()]


def write_leaderboard(folder: Path, *, title: str, metric: str | None = None) -> tuple[Path, Path]:
    """Write ``leaderboard.md`` and ``leaderboard.html`` next to the tables they summarise."""
    folder = Path(folder)
    results = pd.read_csv(folder / "results.csv") if (folder / "results.csv").exists() else pd.DataFrame(
        columns=["task", "method", "backbone", "fraction", "metric", "seed", "value"])
    cells = pd.read_csv(folder / "cells.csv", keep_default_na=False, na_values=[""])
    tables = leaderboard_tables(results, cells, metric=metric)
    paired = paired_tables(results, cells, metric=metric)
    notes = na_reasons(cells)
    intro = ("Each task's metric is named above its table: on the test cases of each split, mean over splits (seeds x folds; "
             "std over splits in brackets). Columns are label fractions of the training cases; "
             "scratch rows are the random-initialisation baseline of each backbone. Below each table: the paired "
             "difference to that scratch row over the same test cases, with the Wilcoxon signed-rank p-value.")
    notes_by_task = {task: metric_note(metric or primary_metric(results, task)) for task in tables}

    md = [f"# {title}", "", intro, ""]
    for task, table in tables.items():
        md += [f"## {task}", "", notes_by_task[task], "", _markdown(table), ""]
        if task in paired:
            md += [_markdown(paired[task]), ""]
    if notes:
        md += ["## Not run", ""] + [f"- {n}" for n in notes] + [""]
    md_path = folder / "leaderboard.md"
    write_atomic(md_path, "\n".join(md))

    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    for task, table in tables.items():
        body += [f"<h2>{html.escape(task)}</h2>", f"<p>{html.escape(notes_by_task[task])}</p>", table.to_html(border=0, classes="leaderboard")]
        if task in paired:
            body.append(paired[task].to_html(border=0, classes="paired"))
    if notes:
        body += ["<h2>Not run</h2>", "<ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ccc;text-align:right}th:first-child,td:first-child{text-align:left}"
    html_path = folder / "leaderboard.html"
    write_atomic(html_path, f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
    return md_path, html_path


def _markdown(table: pd.DataFrame) -> str:
    """Markdown table (pandas ``to_markdown`` would need the optional ``tabulate`` package)."""
    header = [table.index.name or ""] + list(table.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in table.iterrows():
        lines.append("| " + " | ".join([str(name)] + [str(v) for v in row]) + " |")
    return "\n".join(lines)
