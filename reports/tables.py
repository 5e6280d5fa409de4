"""The leaderboard model: per task x metric, rows = configurations, columns = label fractions.

A row is one configuration of one method on one task: method, backbone and everything that sets it
apart (fine-tuning augmentation, missing-series share, hyperparameter overrides, label-aware flag;
``config_id`` when two configurations would otherwise read the same). Rows are grouped by backbone
and, within a backbone, by fine-tuning settings, each group headed by its scratch row: the baseline
of a row is the scratch configuration of the same task, backbone, ``finetune_aug``, ``missing_series``,
spatial augmentation, fine-tuning loss and test-time augmentation (never a scratch row fine-tuned or
tested differently, e.g. when the report merges runs made with other settings).

A cell is a (row, fraction): per split (seed x fold) the mean over test cases (case-level metrics)
or the set-level value (AUC), then mean (std) over splits.

The unit of a comparison (``compare``): with at least ``MIN_SPLITS`` (3) splits matched between the two cells,
the per-split means are paired (n = splits: the SI paper's protocol; a split is one training run, so the test is
about the methods); with fewer, the test cases of the matched splits are paired, which compares single training
runs, and the note under the table says so. Set-level metrics are always paired over splits. Pairs with a NaN
on either side are dropped and do not count in n.

Undefined values: a boundary distance (HD95, MASD) is undefined when the prediction or the reference of the
region is empty (Metrics Reloaded; the tasks store NaN, ``tasks/metrics.py``). They are left out of the mean and
of the tests and counted per cell (``Cell.n_undefined``; ``n_empty_pred``: of them, cases whose prediction was
empty, from the ``empty_pred_<region>`` flags the segmentation tasks record).

Multiple comparisons: Holm per table by default (``holm=True``), separately over the comparisons vs scratch and
the comparisons vs each column's best.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports.load import Runs, parse_json
from reports.stats import ALPHA, TESTS, WILCOXON_MIN_N, Paired, holm as holm_adjust, paired_test, wilcoxon_smallest_p

MISSING = "—"
MIN_SPLITS = 3  # matched splits from which a comparison pairs per-split means instead of test cases


BASELINE_METHODS = ("scratch", "l1")  # the method each backbone group is compared with (benchmark/plan.py adds it)

@dataclass
class Row:
    key: tuple  # (method, backbone, config_id)
    label: str
    method: str
    backbone: str
    finetune_aug: str
    missing_series: float
    label_aware: bool
    overrides: dict
    cell_ids: list[str]
    downstream: tuple = ()  # DOWNSTREAM_COLUMNS: the other fine-tuning, test and execution settings a baseline must share

    @property
    def is_scratch(self) -> bool:
        """The row is its group's baseline: scratch, or l1 on a synthesis task (CoPer Table III's first row)."""
        return self.method in BASELINE_METHODS

    @property
    def setting(self) -> tuple:
        """What a baseline must share: backbone and fine-tuning settings."""
        return (self.backbone, self.finetune_aug, float(self.missing_series), *self.downstream)


@dataclass
class Cell:
    row: Row
    fraction: str
    status: str  # "ok", "n/a", "failed", "missing"
    values: pd.DataFrame  # seed, fold[, case_id], value
    mean: float = float("nan")
    std: float = float("nan")
    n_splits: int = 0
    n_values: int = 0
    reason: str = ""
    bold: bool = False
    marker: str = ""  # "better" / "worse" than the scratch baseline (significant)
    vs_scratch: Paired | None = None
    p_scratch: float = float("nan")  # after Holm when asked
    baseline: str = ""
    vs_best: Paired | None = None
    p_best: float = float("nan")
    published: list = field(default_factory=list)
    repro: dict = field(default_factory=dict)
    n_cases: int = 0  # case-level values (test cases x splits), defined or not
    n_undefined: int = 0  # of them NaN: undefined (a distance with an empty prediction or reference), left out of the mean
    n_empty_pred: int | None = None  # of the undefined, cases with an empty prediction (None: the run has no such flags)

    @functools.cached_property
    def per_split(self) -> pd.Series:
        """Mean per (seed, fold), NaN-free: the cell's mean and the unit of analysis when enough splits match
        (computed once: a cell is compared with the best and with its scratch baselines)."""
        return self.values.groupby(["seed", "fold"])["value"].mean().dropna() if len(self.values) else pd.Series(dtype=float)

    @property
    def undefined_text(self) -> str:
        """"3/18 (2 empty pred.)": undefined values of the cell's case values ("" when none)."""
        if not self.n_undefined:
            return ""
        text = f"{self.n_undefined}/{self.n_cases}"
        return text + (f" ({self.n_empty_pred} empty pred.)" if self.n_empty_pred is not None else "")

    @property
    def text(self) -> str:
        if self.status == "n/a":
            return "n/a"
        if self.status == "failed":
            return "failed"
        if self.status != "ok":
            return MISSING
        text = fmt(self.mean)
        if self.n_splits > 1:
            text += f" ({fmt(self.std)})"
        return text


@dataclass
class Table:
    task: str
    metric: str
    higher_is_better: bool
    primary: bool
    scope: str  # "case" or "set"
    fractions: list[str]
    n_labeled: dict
    rows: list[Row]
    cells: dict  # (row label, fraction) -> Cell
    test: str
    holm: bool
    comparisons_scratch: int = 0
    comparisons_best: int = 0

    def column_label(self, fraction: str) -> str:
        return f"{fraction} (n={self.n_labeled.get(fraction, '?')})"

    @property
    def baseline(self) -> str:
        """The name of the rows compared against: scratch, or l1 on a synthesis task (``BASELINE_METHODS``)."""
        return "/".join(sorted({r.method for r in self.rows if r.is_scratch})) or "scratch"

    @property
    def has_undefined(self) -> bool:
        """Some cell has undefined (NaN) case values: the renderings add an "undefined" column per fraction."""
        return any(c.n_undefined for c in self.cells.values())

    def _comparisons(self, unit: str) -> list[Paired]:
        return [p for c in self.cells.values() for p in (c.vs_scratch, c.vs_best) if p is not None and p.n and p.unit == unit]

    @staticmethod
    def _n_text(pairs: list[Paired]) -> str:
        ns = sorted({p.n for p in pairs})
        return f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"

    @property
    def pairing(self) -> str:
        """How the comparisons of this table paired their values, and what that means."""
        if self.scope != "case":
            pairs = self._comparisons("split")
            return ("paired over matched splits (same seed and fold; the metric is one value per test set)"
                    + (f", {self._n_text(pairs)}" if pairs else ", no pairs"))
        by_split, by_case = self._comparisons("split"), self._comparisons("case")
        parts = []
        if by_split:
            parts.append(f"paired over per-split means (same seed and fold, each the mean over that split's test cases; "
                         f"{self._n_text(by_split)} splits) where ≥ {MIN_SPLITS} splits match, as the SI paper tests")
        if by_case:
            parts.append(f"paired over matched test cases (same seed, fold and case; {self._n_text(by_case)}) where fewer than "
                         f"{MIN_SPLITS} splits match: such a test compares single training runs, not methods (another seed "
                         "may reverse it)")
        return "; ".join(parts) if parts else "no pairs"

    def note(self) -> str:
        """What the numbers and marks mean: printed under every rendering of the table."""
        arrow = "higher" if self.higher_is_better else "lower"

        def count(n: int) -> str:
            return f"{n} comparison{'' if n == 1 else 's'}"

        correction = (f"Holm correction over the {count(self.comparisons_scratch)} vs {self.baseline} and, separately, the "
                      f"{count(self.comparisons_best)} vs each column's best of this table" if self.holm
                      else "no correction for multiple comparisons (--no-holm)")
        how = ("mean over the test cases of each split, then mean (std) over splits" if self.scope == "case"
               else "one value per split's test set, mean (std) over splits")
        text = (f"Metric `{self.metric}` ({arrow} is better): {how}. Bold: the best cell of each column and every cell not "
                f"significantly different from it (a cell that cannot be paired with the best, n < 2, is not bold). ▲ / ▼: significantly better / worse than the {self.baseline} row of the same backbone "
                f"and fine-tuning settings. Test: {TESTS[self.test]}, p < {ALPHA}, {self.pairing}; {correction}.")
        if self.test == "wilcoxon":
            text += (f" The Wilcoxon signed-rank test cannot reach p < {ALPHA} below n = {WILCOXON_MIN_N} pairs (its smallest "
                     f"two-sided p is 2/2^n: {wilcoxon_smallest_p(WILCOXON_MIN_N - 1):.4g} at n = {WILCOXON_MIN_N - 1}).")
        if self.has_undefined:
            text += (" Undefined values: a boundary distance is undefined when the prediction or the reference of the region is "
                     "empty (Metrics Reloaded, Maier-Hein et al. 2024); they are left out of the mean and of the tests, so a "
                     "mean beside a non-zero “undefined” count (undefined / values; empty pred.: of them, empty predictions) "
                     "covers only the defined cases.")
        return text


def fmt(value: float) -> str:
    if value is None or not np.isfinite(value):
        return MISSING
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def fraction_order(labels) -> list[str]:
    """Largest fraction first: percentages (by value), then case counts (by value)."""
    def key(label: str):
        label = str(label)
        try:
            if label.endswith("%"):
                return (0, -float(label[:-1]), label)
            return (1, -float(label.split()[0]), label)
        except ValueError:
            return (2, 0.0, label)

    return sorted(set(map(str, labels)), key=key)


def overrides_of(config_json, variant: str = "") -> dict:
    """The user's variant / --hparam overrides recorded in a cell's config (``method_overrides``, older
    ``hparams_overrides``), else parsed from the ``variant`` column ("cmcl=false,noise=false")."""
    config = parse_json(config_json)
    if isinstance(config, dict):
        for key in ("method_overrides", "hparams_overrides"):
            if config.get(key):
                return dict(config[key])
    out = {}
    for part in str(variant or "").replace(":", ",").split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


# The other fine-tuning, test and execution settings a row's baseline must share (a dry run is compared with a dry run).
DOWNSTREAM_COLUMNS = ("spatial_aug", "finetune_loss", "tta", "precision", "max_steps")


def row_label(method: str, backbone: str, first: pd.Series) -> str:
    """"method (backbone)" plus what sets the configuration apart: fine-tuning augmentation, missing-series
    share, the hyperparameters overridden (an ablation, e.g. cmcl=False)."""
    name = f"{method} ({backbone})"
    if first["finetune_aug"] not in ("", "none", "nan"):
        name += f" + {first['finetune_aug']}"
    if float(first["missing_series"]):
        name += f" missing-series {float(first['missing_series']):g}"  # CSM Table VII
    overrides = overrides_of(first.get("config", ""), first.get("variant", ""))
    if overrides:
        name += " " + ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    if str(first.get("precision", "fp32")) not in ("", "nan", "fp32"):
        name += f" {first['precision']}"
    if dry_run_steps(first):
        name += f" [dry run: max {dry_run_steps(first)} steps, not a result]"
    return name


def dry_run_steps(cell: pd.Series) -> int | None:
    """The step cap of a ``--max-steps`` cell (a dry run: memory and step time, its numbers are not results), or None."""
    value = pd.to_numeric(pd.Series([cell.get("max_steps", "")]), errors="coerce").iloc[0]
    return None if pd.isna(value) else int(value)


def task_rows(cells: pd.DataFrame) -> list[Row]:
    """The configurations of one task's cells, ordered: backbone, fine-tuning settings, scratch first."""
    groups = list(cells.groupby(["method", "backbone", "config_id"], sort=False))
    labels = {}
    for (method, backbone, config_id), group in groups:
        labels[(method, backbone, config_id)] = row_label(method, backbone, group.iloc[0])
    counts = Counter(labels.values())
    rows = []
    for (method, backbone, config_id), group in groups:
        first = group.iloc[0]
        label = labels[(method, backbone, config_id)]
        if counts[label] > 1:
            label += f" cfg {config_id}" if config_id else f" #{len([r for r in rows if r.label.startswith(label)]) + 1}"
        if group["label_aware"].any():
            label += " [label-aware]"
        rows.append(Row(key=(method, backbone, config_id), label=label, method=method, backbone=backbone,
                        finetune_aug=str(first["finetune_aug"]), missing_series=float(first["missing_series"]),
                        label_aware=bool(group["label_aware"].any()), overrides=overrides_of(first.get("config", ""), first.get("variant", "")),
                        cell_ids=list(group["cell_id"]),
                        downstream=tuple(str(first.get(c, "")) for c in DOWNSTREAM_COLUMNS)))
    ran = set(cells.loc[cells["status"] != "n/a", "backbone"])
    backbones = sorted(dict.fromkeys(r.backbone for r in rows), key=lambda b: b not in ran)  # all-n/a backbones last
    settings = list(dict.fromkeys(r.setting for r in rows))
    order = {id(r): i for i, r in enumerate(rows)}
    return sorted(rows, key=lambda r: (backbones.index(r.backbone), settings.index(r.setting), not r.is_scratch, bool(r.overrides), order[id(r)]))


def baseline_of(row: Row, rows: list[Row]) -> list[Row]:
    """Scratch rows with the row's backbone and fine-tuning settings, plain (no overrides) first."""
    if row.is_scratch:
        return []
    return sorted([r for r in rows if r.is_scratch and r.setting == row.setting], key=lambda r: bool(r.overrides))


def _keys(scope: str) -> list[str]:
    return ["seed", "fold", "case_id"] if scope == "case" else ["seed", "fold"]


def compare(a: Cell, b: Cell, *, scope: str, test: str) -> Paired:
    """Paired test of cell a vs cell b: over per-split means when ≥ ``MIN_SPLITS`` splits match (the unit is a training
    run), else over the matched test cases of the matched splits (set-level metrics: always over matched splits)."""
    if scope == "case":
        splits = pd.concat([a.per_split, b.per_split], axis=1, join="inner")
        if len(splits) >= MIN_SPLITS:
            return dataclasses.replace(paired_test(splits.iloc[:, 0], splits.iloc[:, 1], test=test), unit="split")
    pairs = a.values.merge(b.values, on=_keys(scope), suffixes=("_a", "_b"))
    return dataclasses.replace(paired_test(pairs["value_a"], pairs["value_b"], test=test), unit="case" if scope == "case" else "split")


def build_tables(runs: Runs, *, test: str = "ttest", holm: bool = True, metrics: str = "all") -> list[Table]:
    """Every task x metric table (``metrics="primary"``: the main metric only), main metric first per task."""
    if test not in TESTS:
        raise ValueError(f"stat test {test!r}: expected one of {sorted(TESTS)}")
    tables = []
    cells_all = runs.cells
    tasks = list(dict.fromkeys(cells_all["task"])) + [t for t in dict.fromkeys(runs.results["task"]) if t not in set(cells_all["task"])]
    for task in sorted(tasks, key=str):
        cells = cells_all[cells_all["task"] == task]
        rows = task_rows(cells)
        results = runs.results[runs.results["task"] == task]
        empty_pred = runs.empty_pred[runs.empty_pred["cell_id"].isin(cells["cell_id"])]
        fractions = fraction_order(list(cells["fraction"]) + list(results["fraction"]))
        n_labeled = {}
        for fraction in fractions:
            ns = pd.to_numeric(pd.concat([cells.loc[cells["fraction"] == fraction, "n_labeled"],
                                          results.loc[results["fraction"] == fraction, "n_labeled"]]), errors="coerce").dropna()
            n_labeled[fraction] = (f"{int(ns.min())}" if ns.min() == ns.max() else f"{int(ns.min())}–{int(ns.max())}") if len(ns) else "?"
        names = runs.task_metrics(task) or [runs.primary(task)]  # only n/a / failed cells: still one table saying so
        cell_rows = {}  # (row, fraction) -> its cells.csv records: the same for every metric of the task
        for row in rows:
            row_cells = cells[cells["cell_id"].isin(row.cell_ids)]
            for fraction in fractions:
                cell_rows[(row.label, fraction)] = row_cells[row_cells["fraction"] == fraction]
        if metrics == "primary":
            names = names[:1]
        for metric in names:
            scope = runs.scope(task, metric)
            values = results[results["metric"] == metric]
            table = Table(task=task, metric=metric, higher_is_better=runs.direction(task, metric), primary=metric == names[0],
                          scope=scope, fractions=fractions, n_labeled=n_labeled, rows=rows, cells={}, test=test, holm=holm)
            grouped = dict(list(values.groupby("cell_id"))) if len(values) else {}
            flags = dict(list(empty_pred.groupby("cell_id"))) if len(empty_pred) else {}
            for row in rows:
                for fraction in fractions:
                    here = cell_rows[(row.label, fraction)]
                    parts = [grouped[c] for c in here["cell_id"] if c in grouped]
                    frame = pd.concat(parts) if parts else values.iloc[0:0]
                    table.cells[(row.label, fraction)] = _cell(row, fraction, here, frame, scope, runs)
                    if scope == "case":
                        _count_undefined(table.cells[(row.label, fraction)], metric, [flags[c] for c in here["cell_id"] if c in flags])
            _mark(table)
            tables.append(table)
    return tables


def _cell(row: Row, fraction: str, cells: pd.DataFrame, values: pd.DataFrame, scope: str, runs: Runs) -> Cell:
    keys = _keys(scope)
    frame = values.groupby(keys, as_index=False)["value"].mean() if len(values) else pd.DataFrame(columns=keys + ["value"])
    cell = Cell(row=row, fraction=fraction, status="missing", values=frame, repro=reproducibility(cells, runs))
    per_split = cell.per_split
    if len(per_split):
        cell.status = "ok"
        cell.mean = float(per_split.mean())
        cell.std = float(per_split.std(ddof=1)) if len(per_split) > 1 else float("nan")
        cell.n_splits = int(len(per_split))
        cell.n_values = int(frame["value"].notna().sum())
    elif len(cells) and (cells["status"] == "n/a").all():
        cell.status, cell.reason = "n/a", str(cells["reason"].iloc[0])
    elif len(cells) and (cells["status"] == "failed").any():
        cell.status, cell.reason = "failed", str(cells.loc[cells["status"] == "failed", "reason"].iloc[0])
    return cell


def _count_undefined(cell: Cell, metric: str, flags: list[pd.DataFrame]) -> None:
    """Undefined (NaN) case values of a cell and, where the run recorded ``empty_pred_<region>`` flags, how many of
    them had an empty prediction: the flag of the metric's region (``hd95_ET`` -> ``ET``), or of any region for a
    metric over all regions (``hd95_mean``, ``masd``)."""
    frame = cell.values
    cell.n_cases = int(len(frame))
    undefined = frame[frame["value"].isna()] if len(frame) else frame
    cell.n_undefined = int(len(undefined))
    if not flags:
        return
    if not cell.n_undefined:  # nothing to attribute (most cells): the merge below would find no case
        cell.n_empty_pred = 0
        return
    flags = pd.concat(flags)
    region = metric.split("_", 1)[1] if "_" in metric else ""
    chosen = flags[flags["region"] == region] if region in set(flags["region"]) else flags
    empty = chosen.groupby(["seed", "fold", "case_id"], as_index=False)["value"].max()
    merged = undefined.merge(empty, on=["seed", "fold", "case_id"], how="left", suffixes=("", "_empty"))
    cell.n_empty_pred = int((merged["value_empty"] > 0).sum())


def _mark(table: Table) -> None:
    """Bold (best per column + not significantly different) and ▲/▼ vs the scratch baseline."""
    sign = 1.0 if table.higher_is_better else -1.0
    scratch_family, best_family = [], []
    for fraction in table.fractions:
        column = [table.cells[(r.label, fraction)] for r in table.rows]
        scored = [c for c in column if c.status == "ok" and np.isfinite(c.mean)]
        if scored:
            top = max(sign * c.mean for c in scored)
            best = [c for c in scored if sign * c.mean == top]
            for c in scored:
                if c in best:
                    c.bold = True
                    continue
                c.vs_best = compare(best[0], c, scope=table.scope, test=table.test)
                if c.vs_best.testable:
                    best_family.append(c)
        for row in table.rows:
            cell = table.cells[(row.label, fraction)]
            if cell.status != "ok":
                continue
            candidates = [table.cells[(b.label, fraction)] for b in baseline_of(row, table.rows)]
            candidates = [b for b in candidates if b.status == "ok"]
            if not candidates:
                continue
            results = [(compare(cell, b, scope=table.scope, test=table.test), b) for b in candidates]
            paired, base = max(results, key=lambda pb: pb[0].n)  # the baseline sharing most test cases
            cell.vs_scratch, cell.baseline = paired, base.row.label
            if paired.testable:
                scratch_family.append(cell)
    for family, attr, src in ((scratch_family, "p_scratch", "vs_scratch"), (best_family, "p_best", "vs_best")):
        raw = [getattr(c, src).p for c in family]
        adjusted = holm_adjust(raw) if table.holm else raw
        for c, p in zip(family, adjusted):
            setattr(c, attr, float(p))
    table.comparisons_scratch, table.comparisons_best = len(scratch_family), len(best_family)
    for c in best_family:
        c.bold = not c.p_best < ALPHA
    for c in scratch_family:
        if c.p_scratch < ALPHA and c.vs_scratch.delta != 0:
            c.marker = "better" if sign * c.vs_scratch.delta > 0 else "worse"


def reproducibility(cells: pd.DataFrame, runs: Runs) -> dict:
    """What it takes to redo a cell: configuration, search, checkpoint, time, software."""
    if not len(cells):
        return {}

    def unique(column):
        return [v for v in dict.fromkeys(cells[column].astype(str)) if v not in ("", "nan")] if column in cells else []

    config = parse_json(cells["config"].iloc[0]) if "config" in cells else None
    config = config if isinstance(config, dict) else {}
    tuned = [parse_json(v) for v in cells["tuned_params"]] if "tuned_params" in cells else []
    profiles = []
    for d in dict.fromkeys(cells["_dir"]) if "_dir" in cells else []:
        profile = runs.run_configs.get(d, {}).get("profile")
        name = profile.get("name") if isinstance(profile, dict) else profile
        if name:
            profiles.append(str(name))
    budget = pd.to_numeric(cells.get("search_budget"), errors="coerce").dropna() if "search_budget" in cells else pd.Series(dtype=float)
    seconds = pd.to_numeric(cells["pretrain_seconds"], errors="coerce").fillna(0) + pd.to_numeric(cells["finetune_seconds"], errors="coerce").fillna(0)
    return {
        "cell_ids": list(cells["cell_id"]),
        "runs": unique("run"),
        "statuses": dict(Counter(cells["status"])),
        "config_ids": unique("config_id"),
        "method_config": config.get("method_config", {}),
        "overrides": config.get("method_overrides") or config.get("hparams_overrides") or {},
        "config": config,
        "search_budget": int(budget.max()) if len(budget) else None,
        "pretrain_data": pretraining_data(config),
        "tuned_params": [t for t in tuned if t],
        "pretrain_hashes": unique("pretrain_hash"),
        "pretrain_reused": unique("pretrain_reused"),
        "wall_seconds": float(seconds.sum()),
        "device_hours": float(pd.to_numeric(cells["device_hours"], errors="coerce").fillna(0).sum()),
        "versions": [parse_json(v) or v for v in unique("versions")],
        "profiles": list(dict.fromkeys(profiles)),
    }


def json_text(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def pretraining_data(config: dict) -> str:
    """What a row's pretraining read, from its resolved configuration: a --pretrain-corpus of several tasks
    (with case counts) or its own task's cases; "" for a row without pretraining."""
    pretrain = config.get("pretrain") if isinstance(config, dict) else None
    if not isinstance(pretrain, dict):
        return ""
    corpus = pretrain.get("corpus") or []
    if corpus:
        return "corpus " + " + ".join(f"{p.get('task')} ({p.get('n_cases')})" for p in corpus)
    n = config.get("n_pretrain")
    return f"own task ({n} cases)" if n else "own task"
