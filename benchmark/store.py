"""Results and artefacts on disk: atomic writes (``benchmark.records.write_atomic``), content-hashed keys.

* ``results.csv`` -- the tidy table, one row per metric value of one cell:
  run, method, backbone, task, fraction, n_labeled, seed, fold, case_id, metric, value, plus
  ``cell_id``, the key that joins a row to its cell record (and so to its resolved config), and
  ``scope``: "case" (a value of one test case) or "set" (a value of the whole test set, e.g. AUC;
  its case_id is empty).
* ``cells.csv``   -- one row per cell: status (done / n/a / failed), reason, the variant label,
  resolved config (JSON) and its short hash ``config_id``, pretraining checkpoint hash (an external checkpoint's:
  the sha256 of its file, and what transferred: ``transfer_loaded`` / ``_missing`` / ``_unexpected`` / ``_replaced``),
  wall time, device-hours and software versions.
* ``curves.csv``  -- the fine-tuning curves of every cell: run, cell_id, step, metric (validation_score,
  train_loss), value; the validation-selected step is in the cell record (``selected_step``).
* ``metrics.csv`` -- one row per metric a task records: direction (higher_is_better), whether it is
  the task's main metric (primary), its scope and a description where a convention sets its scale (e.g. the
  synthesis PSNR on 8-bit slices); the report reads directions from here, not from code.
All are rewritten whole through a temp file + rename after every cell, so an interrupted run
always leaves valid tables, and a rerun with the same run name skips finished cells.

This module owns the schema: ``result_rows`` and ``cell_record`` derive the rows from a planned
Job (``benchmark.job``) and what its worker returned.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from benchmark.records import write_atomic  # noqa: F401  (the one atomic writer; re-exported: callers import it from here)

if TYPE_CHECKING:  # the store reads Jobs and results by attribute; importing it stays torch-free
    from benchmark.job import CellResult, CellSpec, Job

RESULT_COLUMNS = ["run", "method", "backbone", "task", "fraction", "n_labeled", "seed", "fold", "case_id", "metric", "value", "cell_id", "scope"]
CELL_COLUMNS = [
    "run", "cell_id", "method", "backbone", "task", "fraction", "n_labeled", "seed", "fold", "status", "reason", "variant",
    "label_aware", "finetune_aug", "spatial_aug", "finetune_loss", "tta", "missing_series", "config_id", "pretrain_hash", "pretrain_reused", "pretrain_seconds", "finetune_seconds",
    "pretrain_loss_initial", "pretrain_loss_final",
    "transfer_loaded", "transfer_missing", "transfer_unexpected", "transfer_replaced",
    "pretrain_resumed_from", "finetune_resumed_from", "node", "device_hours", "selected_step", "validation_score", "tuned_params", "search_budget", "precision", "compiled", "loader_workers",
    "max_steps", "step_seconds", "stage_seconds", "versions", "config",
]
CURVE_COLUMNS = ["run", "cell_id", "step", "metric", "value"]
METRIC_COLUMNS = ["task", "metric", "higher_is_better", "primary", "scope", "description"]
LEGACY_SET_CASE_ID = "__set__"  # how results.csv marked set-level rows before the ``scope`` column


# ---- the schema: rows and records from a Job and its worker's results -------------------------------
def variant_label(overrides: dict[str, Any]) -> str:
    """"cmcl=false,noise=false" for a method's user-set hyperparameters ("" for the paper defaults)."""
    return ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(overrides.items()))


def result_rows(job: "Job", cell: "CellSpec", result: "CellResult") -> list[dict[str, Any]]:
    """The tidy rows of one finished cell (without ``run``, added by the store)."""
    return [{"method": job.method, "backbone": job.backbone, "task": job.task, "fraction": cell.fraction, "n_labeled": cell.n_labeled,
             "seed": job.seed, "fold": job.fold, "case_id": "" if row.case_id is None else row.case_id, "metric": row.metric,
             "value": row.value, "scope": row.scope}
            for row in result.rows]


def cell_record(job: "Job", cell: "CellSpec", *, status: str, reason: str = "", result: "CellResult | None" = None,
                device_count: float = 1.0, versions: dict[str, str] | None = None) -> dict[str, Any]:
    """One cell's record: status, what sets it apart, resolved configuration, cost."""
    seconds = (result.finetune_seconds + result.pretrain_seconds / max(1, len(job.cells))) if result else None
    job_fields = {k: v for k, v in job.to_dict().items() if k not in ("cells", "train_ids", "test_ids", "method_config", "method_overrides")}
    if job.pretrain is not None:  # case lists are long: the record keeps their sizes (config.json has every Job whole)
        job_fields["pretrain"] = {k: v for k, v in job_fields["pretrain"].items() if k != "case_ids"}
        job_fields["pretrain"]["corpus"] = [{"task": p.task_ref, "n_cases": len(p.case_ids), "extra_root": p.extra_root} for p in job.pretrain.corpus]
    config = {**job_fields, "method_config": job.to_dict()["method_config"], "method_overrides": job.method_overrides,
              "labeled_ids": list(cell.labeled_ids), "val_ids": list(job.val_ids), "n_train": len(job.train_ids),
              "n_validation": len(job.val_ids), "n_test": len(job.test_ids),
              "n_pretrain": (sum(len(p.case_ids) for p in job.pretrain.corpus) or len(job.pretrain.case_ids)) if job.pretrain else 0}
    return {
        "cell_id": cell.cell_id, "method": job.method, "backbone": job.backbone, "task": job.task, "fraction": cell.fraction,
        "n_labeled": cell.n_labeled, "seed": job.seed, "fold": job.fold, "status": status, "reason": reason,
        "variant": variant_label(job.method_overrides), "label_aware": job.label_aware, "finetune_aug": job.finetune.augmentation,
        "spatial_aug": job.finetune.spatial_aug, "finetune_loss": job.finetune.loss, "tta": job.finetune.tta,
        "missing_series": job.finetune.missing_series, "config_id": cell.cell_id.rsplit("|", 1)[-1],
        # an external checkpoint's (--pretrained) hash is the sha256 of its file
        "pretrain_hash": job.pretrain.key if job.pretrain else job.external.sha256 if job.external else "", "pretrain_reused": bool(result.pretrain_reused) if result else False,
        "pretrain_seconds": result.pretrain_seconds if result else None, "finetune_seconds": result.finetune_seconds if result else None,
        "pretrain_loss_initial": result.pretrain_loss[0] if result and result.pretrain_loss else None,
        "pretrain_loss_final": result.pretrain_loss[1] if result and result.pretrain_loss else None,
        # what an external checkpoint gave the network (planned from the file; the worker logs the same)
        **{f"transfer_{k}": getattr(job.external.transfer, k) if job.external else None for k in ("loaded", "missing", "unexpected", "replaced")},
        # the step an interrupted stage continued from (its checkpoint; 0: it ran from the start)
        "pretrain_resumed_from": result.resumed_from.get("pretrain", 0) if result else None,
        "finetune_resumed_from": result.resumed_from.get("finetune", 0) if result else None,
        "node": result.node if result else "",
        "device_hours": seconds * device_count / 3600.0 if result else None,
        "selected_step": result.selected_step if result else None, "validation_score": result.validation_score if result else None,
        "tuned_params": json.dumps(job.tuned_params, sort_keys=True) if job.search_budget else "", "search_budget": job.search_budget,
        # how the loops ran: a cell with max_steps set is a dry run (memory and step time), not a result
        "precision": job.execution.precision, "compiled": job.execution.compile, "loader_workers": job.execution.loader_workers,
        "max_steps": job.execution.max_steps, "step_seconds": json.dumps(result.step_seconds, sort_keys=True) if result else "",
        "stage_seconds": json.dumps(result.stage_seconds, sort_keys=True) if result else "",
        "versions": json.dumps(versions or {}, sort_keys=True), "config": json.dumps(config, sort_keys=True, default=str),
    }


def content_hash(payload: Any, length: int = 16) -> str:
    """Stable hash of a JSON-serialisable payload (sorted keys), used for cache keys."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def write_folder_once(root: Path, write) -> Path:
    """Create the folder ``root`` once, atomically: ``write(tmp)`` fills a temp folder beside it, renamed into
    place; a concurrent writer that wins the race is fine. Returns ``root`` (already there: untouched)."""
    import shutil

    root = Path(root)
    if root.exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        write(tmp)
        os.replace(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not root.exists():  # another process may have won the race
            raise
    return root


class ResultStore:
    """The run's output folder: tidy results, per-cell records, resolved configuration."""

    def __init__(self, folder: Path, run: str) -> None:
        self.folder, self.run = Path(folder), run
        self.folder.mkdir(parents=True, exist_ok=True)
        self.results_path = self.folder / "results.csv"
        self.cells_path = self.folder / "cells.csv"

    def results(self) -> pd.DataFrame:
        """The tidy table; a table written before the ``scope`` column gets it from the legacy set-row marker."""
        if not self.results_path.exists():
            return pd.DataFrame(columns=RESULT_COLUMNS)
        table = pd.read_csv(self.results_path, dtype={"case_id": str}, keep_default_na=False, na_values={"value": [""]})
        if "scope" not in table:
            legacy = table["case_id"].astype(str) == LEGACY_SET_CASE_ID
            table["scope"] = legacy.map({True: "set", False: "case"})
            table.loc[legacy, "case_id"] = ""
        return table

    def cells(self) -> pd.DataFrame:
        if self.cells_path.exists():
            return pd.read_csv(self.cells_path, keep_default_na=False, na_values=[""])
        return pd.DataFrame(columns=CELL_COLUMNS)

    def finished_cells(self) -> set[str]:
        cells = self.cells()
        return set(cells.loc[cells["status"] == "done", "cell_id"]) if len(cells) else set()

    def add_cell(self, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Append one cell's record and its per-case rows (replacing an earlier attempt of the same cell)."""
        record = {"run": self.run, **record}
        cells = self.cells()
        cells = cells[cells["cell_id"] != record["cell_id"]] if len(cells) else cells
        cells = pd.concat([cells, pd.DataFrame([record], columns=CELL_COLUMNS)], ignore_index=True) if len(cells) else pd.DataFrame([record], columns=CELL_COLUMNS)
        if rows:
            new = pd.DataFrame([{"run": self.run, **r, "cell_id": record["cell_id"]} for r in rows], columns=RESULT_COLUMNS)
            old = self.results()
            if len(old):
                new = pd.concat([old[old["cell_id"] != record["cell_id"]], new], ignore_index=True)
            write_atomic(self.results_path, new.to_csv(index=False))
        write_atomic(self.cells_path, cells.to_csv(index=False))

    def add_curve(self, cell_id: str, curve) -> None:
        """Record a cell's fine-tuning curve (``CellResult.curve``: (step, metric, value)), replacing an earlier attempt."""
        path = self.folder / "curves.csv"
        old = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=CURVE_COLUMNS)
        new = pd.DataFrame([{"run": self.run, "cell_id": cell_id, "step": s, "metric": m, "value": v} for s, m, v in curve], columns=CURVE_COLUMNS)
        table = pd.concat([old[old["cell_id"] != cell_id], new], ignore_index=True) if len(old) else new
        write_atomic(path, table.to_csv(index=False))

    def add_metric_info(self, task: str, infos) -> None:
        """Record the metrics a task reports (``benchmark.records.MetricInfo``), replacing that task's earlier rows."""
        path = self.folder / "metrics.csv"
        old = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=METRIC_COLUMNS)
        new = pd.DataFrame([{"task": task, "metric": i.name, "higher_is_better": i.higher_is_better, "primary": i.primary, "scope": i.scope,
                             "description": i.description} for i in infos], columns=METRIC_COLUMNS)
        table = pd.concat([old[old["task"] != task], new], ignore_index=True) if len(old) else new
        write_atomic(path, table.to_csv(index=False))

    def write_json(self, name: str, payload: Any) -> Path:
        path = self.folder / name
        write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str))
        return path

