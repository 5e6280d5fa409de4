"""Read one or several run folders into one set of tidy tables (pure pandas; no torch, no Ray).

Files read (missing ones are absent information, never an error):

* ``results.csv`` -- one value per (cell, test case, metric); ``scope`` "case" or "set" (older files
  have no ``scope`` and mark set-level rows, e.g. AUC, by case id ``__set__``).
* ``cells.csv``   -- one row per cell (status, settings, resolved config JSON, timings, versions ...).
* ``metrics.csv`` -- per (task, metric): direction, primary flag, scope. Older folders lack it:
  :func:`default_direction` / :func:`default_primary` give the built-in rule.
* ``curves.csv``  -- validation curves (cell_id, step, metric, value), when the run stored them.
* ``config.json`` -- the run's resolved configuration (profile name, data folders) for protocol notes.

``empty_pred_<region>`` rows of results.csv are not metrics: they flag the test cases whose prediction of a
region was empty (where a boundary distance is undefined, NaN) and go to :attr:`Runs.empty_pred`.

Several folders merge: a cell id present in more than one folder is taken from the last folder
given (a rerun replaces the earlier attempt); its result rows come from that folder too.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.records import EMPTY_PRED_PREFIX  # per-case flags of segmentation tasks: 1 = the region's prediction was empty

SET_CASE_ID = "__set__"  # older results.csv: case id of set-level rows (tasks.classification.SET_CASE_ID)
NOT_METRICS_PREFIXES = ("prob_", EMPTY_PRED_PREFIX)  # per-case predictions of classification tasks and empty-prediction flags, not metrics
NOT_METRICS = {"target", "correct"}  # the case's class and a 0/1 hit: accuracy is the set-level metric
CELL_DEFAULTS = {
    "run": "", "status": "done", "reason": "", "label_aware": False, "finetune_aug": "none", "missing_series": 0.0,
    # downstream settings added later; older runs had none of them
    "spatial_aug": "none", "finetune_loss": "default", "tta": "none",
    "config_id": "", "pretrain_hash": "", "pretrain_reused": "", "pretrain_seconds": float("nan"),
    "finetune_seconds": float("nan"), "device_hours": float("nan"), "config": "", "variant": "", "versions": "",
    "tuned_params": "", "search_budget": float("nan"), "n_labeled": float("nan"), "seed": 0, "fold": 0,
    # execution settings added later (older runs: fp32, uncapped)
    "precision": "fp32", "compiled": False, "loader_workers": 0, "max_steps": "", "step_seconds": "", "stage_seconds": "",
}
REQUIRED = {"results.csv": ("cell_id", "metric", "value"), "cells.csv": ("cell_id", "method", "backbone", "task", "fraction"),
            "metrics.csv": ("task", "metric"), "curves.csv": ("cell_id", "step", "metric", "value")}
CELL_KEYS = ["method", "backbone", "task", "fraction", "n_labeled", "seed", "fold"]
EMPTY_PRED_COLUMNS = ["cell_id", "seed", "fold", "case_id", "region", "value"]


# The metrics the suite records whose lower values are better, for folders without metrics.csv (which records every
# metric's direction since it exists): surface distances in mm (benchmark/kinds/segmentation.py) and the synthesis
# kind's perceptual distances (benchmark/kinds/synthesis.py: CoPer, LPIPS). A name matches itself or ``<name>_...``.
LOWER_IS_BETTER = ("hd95", "hd", "masd", "assd", "asd", "coper", "lpips")


def default_direction(metric: str) -> bool:
    """True when higher is better: the distances of ``LOWER_IS_BETTER`` (and any ``*distance*``) are lower-is-better,
    the rest (Dice, NSD, AUC, accuracy, PSNR, SSIM, ...) higher."""
    name = metric.lower()
    lower = any(name == known or name.startswith(known + "_") for known in LOWER_IS_BETTER) or "distance" in name
    return not lower


def default_primary(metrics: list[str]) -> str:
    """``dice_mean`` if recorded, else ``auc``, else ``psnr`` (synthesis), else the first Dice, else the first metric."""
    for name in ("dice_mean", "auc", "psnr"):
        if name in metrics:
            return name
    dice = [m for m in metrics if m.startswith("dice")]
    return dice[0] if dice else (metrics[0] if metrics else "dice_mean")


def is_metric(name: str) -> bool:
    return name not in NOT_METRICS and not name.startswith(NOT_METRICS_PREFIXES)


def parse_json(text) -> dict | list | None:
    if text is None or (isinstance(text, float) and math.isnan(text)) or str(text).strip() in ("", "nan"):
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


@dataclass
class Runs:
    """The merged tables of one report."""

    results: pd.DataFrame  # per-value rows joined with their cell's settings
    cells: pd.DataFrame  # one row per cell (deduplicated by cell id)
    metrics: pd.DataFrame  # task, metric, higher_is_better, primary, scope (given or inferred)
    curves: pd.DataFrame  # cell_id, step, metric, value (may be empty)
    run_configs: dict[int, dict] = field(default_factory=dict)  # folder index -> config.json
    folders: list[Path] = field(default_factory=list)
    # cell_id, seed, fold, case_id, region, value (1.0: the region's prediction was empty); empty for older runs
    empty_pred: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EMPTY_PRED_COLUMNS))

    def task_metrics(self, task: str) -> list[str]:
        """The task's metrics, primary first, then in the order metrics.csv gives (or Dice, HD95, others)."""
        m = self.metrics[self.metrics["task"] == task]
        return list(m.sort_values(["primary", "_order"], ascending=[False, True])["metric"])

    def direction(self, task: str, metric: str) -> bool:
        row = self.metrics[(self.metrics["task"] == task) & (self.metrics["metric"] == metric)]
        return bool(row["higher_is_better"].iloc[0]) if len(row) else default_direction(metric)

    def scope(self, task: str, metric: str) -> str:
        row = self.metrics[(self.metrics["task"] == task) & (self.metrics["metric"] == metric)]
        return str(row["scope"].iloc[0]) if len(row) else "case"

    def primary(self, task: str) -> str:
        names = self.task_metrics(task)
        return names[0] if names else "dice_mean"


def _bool(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0", "yes")


def _read_csv(path: Path, **kwargs) -> pd.DataFrame | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not a readable CSV table ({err})") from err
    missing = [c for c in REQUIRED.get(path.name, ()) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected at least {list(REQUIRED[path.name])}")
    return frame


def normalise_results(results: pd.DataFrame) -> pd.DataFrame:
    """Add ``scope`` where missing (older files: case id ``__set__`` = set-level), clear set rows' case ids."""
    results = results.copy()
    if "case_id" not in results:
        results["case_id"] = ""
    results["case_id"] = results["case_id"].map(lambda v: "" if pd.isna(v) else str(v))
    if "scope" not in results:
        results["scope"] = "case"
    results["scope"] = results["scope"].map(lambda v: "case" if pd.isna(v) or str(v) == "" else str(v))
    results.loc[results["case_id"] == SET_CASE_ID, "scope"] = "set"
    results.loc[results["scope"] == "set", "case_id"] = ""
    results["value"] = pd.to_numeric(results["value"], errors="coerce")
    return results


def normalise_cells(cells: pd.DataFrame) -> pd.DataFrame:
    cells = cells.copy()
    for column, default in CELL_DEFAULTS.items():
        if column not in cells:
            cells[column] = default
    for column in ("run", "reason", "config_id", "pretrain_hash", "config", "variant", "versions", "tuned_params", "finetune_aug"):
        cells[column] = cells[column].map(lambda v: "" if pd.isna(v) else str(v))
    cells["finetune_aug"] = cells["finetune_aug"].replace({"": "none", "nan": "none"})
    for column, default in (("spatial_aug", "none"), ("finetune_loss", "default"), ("tta", "none"), ("precision", "fp32")):
        cells[column] = cells[column].map(lambda v, d=default: d if pd.isna(v) or str(v) in ("", "nan") else str(v))
    cells["missing_series"] = pd.to_numeric(cells["missing_series"], errors="coerce").fillna(0.0)
    cells["label_aware"] = cells["label_aware"].map(_bool)
    cells["status"] = cells["status"].map(lambda v: "done" if pd.isna(v) or v == "" else str(v))
    for column in ("seed", "fold"):
        cells[column] = pd.to_numeric(cells[column], errors="coerce").fillna(0).astype(int)
    cells["max_steps"] = cells["max_steps"].map(lambda v: "" if pd.isna(v) or str(v) in ("", "nan") else str(int(float(v))))
    for column in ("pretrain_seconds", "finetune_seconds", "device_hours", "search_budget", "n_labeled"):
        cells[column] = pd.to_numeric(cells[column], errors="coerce")
    cells["fraction"] = cells["fraction"].astype(str)
    return cells


def load_runs(run_dirs: list[Path]) -> Runs:
    """Read and merge the run folders (see the module docstring)."""
    all_results, all_cells, all_metrics, all_curves, configs = [], [], [], [], {}
    folders = [Path(d) for d in run_dirs]
    for index, folder in enumerate(folders):
        results = _read_csv(folder / "results.csv", dtype={"case_id": str, "fraction": str})
        cells = _read_csv(folder / "cells.csv", keep_default_na=False, na_values=[""], dtype={"fraction": str})  # "n/a" is a status
        metrics = _read_csv(folder / "metrics.csv")
        curves = _read_csv(folder / "curves.csv")
        if results is not None and len(results):
            all_results.append(normalise_results(results).assign(_dir=index))
        if cells is not None and len(cells):
            all_cells.append(normalise_cells(cells).assign(_dir=index))
        if metrics is not None and len(metrics):
            all_metrics.append(metrics.assign(_dir=index))
        if curves is not None and len(curves):
            all_curves.append(curves.assign(_dir=index))
        config = parse_json((folder / "config.json").read_text()) if (folder / "config.json").exists() else None
        configs[index] = config if isinstance(config, dict) else {}
    cells = pd.concat(all_cells, ignore_index=True) if all_cells else normalise_cells(pd.DataFrame(columns=CELL_KEYS + ["cell_id"]))
    cells = cells.drop_duplicates("cell_id", keep="last").reset_index(drop=True)
    results = pd.concat(all_results, ignore_index=True) if all_results else normalise_results(
        pd.DataFrame(columns=CELL_KEYS + ["cell_id", "case_id", "metric", "value"])).assign(_dir=-1)
    results, empty_pred = _split_flags(_attach_cells(results, cells))
    metrics = _metrics_table(results, pd.concat(all_metrics, ignore_index=True) if all_metrics else None, cells)
    curves = pd.concat(all_curves, ignore_index=True) if all_curves else pd.DataFrame(columns=["cell_id", "step", "metric", "value"])
    return Runs(results=results, cells=cells, metrics=metrics, curves=curves, run_configs=configs, folders=folders, empty_pred=empty_pred)


def runs_from_frames(results: pd.DataFrame, cells: pd.DataFrame, metrics: pd.DataFrame | None = None) -> Runs:
    """The same tables from in-memory frames (one run), e.g. for tests and notebooks."""
    cells = normalise_cells(cells).assign(_dir=0).drop_duplicates("cell_id", keep="last").reset_index(drop=True)
    results = _attach_cells(normalise_results(results).assign(_dir=0), cells) if len(results) else _attach_cells(
        normalise_results(pd.DataFrame(columns=CELL_KEYS + ["cell_id", "case_id", "metric", "value"])).assign(_dir=0), cells)
    results, empty_pred = _split_flags(results)
    return Runs(results=results, cells=cells, metrics=_metrics_table(results, metrics, cells),
                curves=pd.DataFrame(columns=["cell_id", "step", "metric", "value"]), run_configs={0: {}}, folders=[], empty_pred=empty_pred)


def _split_flags(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the metric rows, the ``empty_pred_<region>`` flags as EMPTY_PRED_COLUMNS); other non-metric rows (``prob_*``) dropped."""
    names = results["metric"].astype(str)
    is_flag = names.str.startswith(EMPTY_PRED_PREFIX).to_numpy(dtype=bool)
    flags = results.loc[is_flag].assign(region=names[is_flag].str[len(EMPTY_PRED_PREFIX):])
    flags = flags[EMPTY_PRED_COLUMNS].reset_index(drop=True) if len(flags) else pd.DataFrame(columns=EMPTY_PRED_COLUMNS)
    keep = np.array([is_metric(str(m)) for m in results["metric"]], dtype=bool)
    return results.loc[keep].reset_index(drop=True), flags


def _attach_cells(results: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Every result row takes its cell's settings from cells.csv (the record of what ran); rows of a cell
    that a later folder replaced are dropped; rows without a cell record keep their own columns."""
    if "cell_id" not in results:
        results = results.assign(cell_id="")
    results = results.copy()
    results["cell_id"] = results["cell_id"].map(lambda v: "" if pd.isna(v) else str(v))
    owner = dict(zip(cells["cell_id"], cells["_dir"])) if "_dir" in cells else {}
    known = results["cell_id"].isin(owner)
    keep = ~known | (results["cell_id"].map(owner) == results["_dir"])
    results = results.loc[np.asarray(keep, dtype=bool)]
    attributes = cells.set_index("cell_id")
    for column in CELL_KEYS:
        mapped = results["cell_id"].map(attributes[column]) if column in attributes else None
        own = results[column] if column in results else pd.Series(float("nan") if column == "n_labeled" else "", index=results.index)
        results[column] = mapped.where(results["cell_id"].isin(owner), own) if mapped is not None else own
    results["fraction"] = results["fraction"].astype(str)
    for column in ("seed", "fold"):
        results[column] = pd.to_numeric(results[column], errors="coerce").fillna(0).astype(int)
    return results.reset_index(drop=True)


def _metrics_table(results: pd.DataFrame, given: pd.DataFrame | None, cells: pd.DataFrame) -> pd.DataFrame:
    """metrics.csv where the run wrote one, else inferred from the results with the built-in rule."""
    rows = []
    tasks = list(dict.fromkeys(list(cells["task"]) + list(results["task"])))
    for task in tasks:
        recorded = list(dict.fromkeys(results.loc[results["task"] == task, "metric"].astype(str)))
        listed = given[given["task"] == task] if given is not None and "task" in given else None
        if listed is not None and len(listed):
            listed = listed.drop_duplicates("metric", keep="last")
            for order, r in enumerate(listed.itertuples()):
                scope = str(getattr(r, "scope", "") or "")
                if scope not in ("case", "set"):
                    scope = _scope_of(results, task, r.metric)
                rows.append({"task": task, "metric": str(r.metric), "higher_is_better": _bool(getattr(r, "higher_is_better", True)),
                             "primary": _bool(getattr(r, "primary", False)), "scope": scope, "_order": order})
            if not any(r["primary"] for r in rows if r["task"] == task):
                first = [r for r in rows if r["task"] == task]
                primary = default_primary([r["metric"] for r in first])
                for r in first:
                    r["primary"] = r["metric"] == primary
            continue
        primary = default_primary(recorded)
        ordered = sorted(recorded, key=lambda m: (m != primary, not m.startswith("dice"), m != "dice_mean", not m.startswith("hd95"), m))
        rows += [{"task": task, "metric": m, "higher_is_better": default_direction(m), "primary": m == primary,
                  "scope": _scope_of(results, task, m), "_order": i} for i, m in enumerate(ordered)]
    return pd.DataFrame(rows, columns=["task", "metric", "higher_is_better", "primary", "scope", "_order"])


def _scope_of(results: pd.DataFrame, task: str, metric: str) -> str:
    scopes = results.loc[(results["task"] == task) & (results["metric"] == metric), "scope"]
    return "set" if len(scopes) and (scopes == "set").all() else "case"
