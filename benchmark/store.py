"""Results and artefacts on disk: atomic writes, content-hashed keys.

* ``results.csv`` -- the tidy table, one row per metric value of one test case of one cell:
  run, method, backbone, task, fraction, n_labeled, seed, fold, case_id, metric, value, plus
  ``cell_id``, the key that joins a row to its cell record (and so to its resolved config).
* ``cells.csv``   -- one row per cell: status (done / n/a / failed), reason, resolved config
  (JSON) and its short hash ``config_id``, pretraining checkpoint hash, wall time and device-hours.
Both are rewritten whole through a temp file + rename after every cell, so an interrupted
run always leaves valid tables, and a rerun with the same run name skips finished cells.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

RESULT_COLUMNS = ["run", "method", "backbone", "task", "fraction", "n_labeled", "seed", "fold", "case_id", "metric", "value", "cell_id"]
CELL_COLUMNS = [
    "run", "cell_id", "method", "backbone", "task", "fraction", "n_labeled", "seed", "fold", "status", "reason",
    "label_aware", "finetune_aug", "missing_series", "config_id", "pretrain_hash", "pretrain_reused", "pretrain_seconds", "finetune_seconds", "device_hours", "config",
]


def content_hash(payload: Any, length: int = 16) -> str:
    """Stable hash of a JSON-serialisable payload (sorted keys), used for cache keys."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


class ResultStore:
    """The run's output folder: tidy results, per-cell records, resolved configuration."""

    def __init__(self, folder: Path, run: str) -> None:
        self.folder, self.run = Path(folder), run
        self.folder.mkdir(parents=True, exist_ok=True)
        self.results_path = self.folder / "results.csv"
        self.cells_path = self.folder / "cells.csv"

    def results(self) -> pd.DataFrame:
        if self.results_path.exists():
            return pd.read_csv(self.results_path)
        return pd.DataFrame(columns=RESULT_COLUMNS)

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

    def write_json(self, name: str, payload: Any) -> Path:
        path = self.folder / name
        write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str))
        return path


def pretrain_checkpoint_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "pretrained" / f"{key}.pt"
