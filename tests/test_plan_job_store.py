"""Planning (benchmark/plan.py: typed Jobs, splits, cache keys), the Job's JSON round trip
(benchmark/job.py), argument parsing (benchmark/cli.py) and the results store's schema (benchmark/store.py)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from benchmark import store as store_module
from benchmark.cli import parse_fractions, parse_method_entry
from benchmark.errors import BenchmarkInputError
from benchmark.job import Job
from benchmark.datasources import TaskData
from benchmark.plan import MethodEntry, build_plan, labeled_subset, split_cases
from benchmark.profiles import SMOKE
from benchmark.store import CELL_COLUMNS, RESULT_COLUMNS, ResultStore, content_hash
from tasks import Case, get_task
from benchmark.kinds import kind_of


# ---- fractions ---------------------------------------------------------------------------------------
def test_parse_percentages():
    """'100%,25%' -> two percentage fractions labelled as written."""
    fractions = parse_fractions("100%,25%")
    assert [(f.label, f.percent, f.count) for f in fractions] == [("100%", 100.0, None), ("25%", 25.0, None)]
    assert [f.label for f in parse_fractions(" 12.5% , 10% ")] == ["12.5%", "10%"]


def test_parse_counts():
    """'5' is a number of labelled cases, not a percentage."""
    (fraction,) = parse_fractions("5")
    assert fraction.count == 5 and fraction.percent is None and fraction.label == "5 cases"
    assert fraction.n_labeled(20) == 5


@pytest.mark.parametrize("text", ["", ",", "0%", "150%", "-5", "0", "abc", "25", "10%%", "2.5", "5cases"])
def test_parse_bad_fractions_raise(text):
    """Empty, zero, >100%, negative, non-numeric and fractional counts are rejected with BenchmarkInputError."""
    if text == "25":  # a plain integer is a valid count
        parse_fractions(text)
        return
    with pytest.raises(BenchmarkInputError):
        parse_fractions(text)


def test_fraction_n_labeled_rounding_and_limits():
    """Percentages round half up with at least 1 case; a count above the training set is an error."""
    f100, f25, f10 = parse_fractions("100%,25%,10%")
    assert f100.n_labeled(9) == 9
    assert f25.n_labeled(10) == 3  # 2.5 -> 3
    assert f25.n_labeled(9) == 2  # 2.25 -> 2
    assert f10.n_labeled(3) == 1  # never 0
    (count,) = parse_fractions("12")
    with pytest.raises(BenchmarkInputError, match="12"):
        count.n_labeled(9)


# ---- splits --------------------------------------------------------------------------------------------
IDS = [f"case{i:03d}" for i in range(40)]


def test_split_cases_disjoint_and_complete():
    """Train and test are disjoint, cover every case, and the test set is ~test_fraction."""
    train, test = split_cases(IDS, test_fraction=0.25, split_seed=0)
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(IDS)
    assert len(test) == 10


def test_split_cases_fixed_whatever_the_input_order():
    """The test set depends only on the case ids and the task's split seed (not on order or run seed)."""
    a = split_cases(IDS, test_fraction=0.25, split_seed=0)
    b = split_cases(list(reversed(IDS)), test_fraction=0.25, split_seed=0)
    assert a == b
    assert split_cases(IDS, test_fraction=0.25, split_seed=1)[1] != a[1]


def test_split_cases_needs_two_cases():
    """A single case cannot be split into train and test."""
    with pytest.raises(BenchmarkInputError):
        split_cases(["only"], test_fraction=0.25, split_seed=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_labeled_subsets_are_nested_and_exclude_test(seed):
    """For any seed: 10% ⊂ 25% ⊂ 100% of the training cases, and no test case is ever labelled."""
    train, test = split_cases(IDS, test_fraction=0.25, split_seed=0)
    sizes = [f.n_labeled(len(train)) for f in parse_fractions("10%,25%,50%,100%")]
    subsets = [labeled_subset(train, n, seed=seed) for n in sizes]
    for small, large in zip(subsets, subsets[1:]):
        assert set(small) < set(large)
    assert set(subsets[-1]) == set(train)
    for subset, n in zip(subsets, sizes):
        assert len(subset) == n and not set(subset) & set(test)


def test_labeled_subset_depends_on_seed():
    """Different seeds draw different small subsets; the same seed the same one."""
    train, _ = split_cases(IDS, test_fraction=0.25, split_seed=0)
    assert labeled_subset(train, 5, seed=0) == labeled_subset(train, 5, seed=0)
    assert len({tuple(labeled_subset(train, 5, seed=s)) for s in range(5)}) > 1


# ---- build_plan -------------------------------------------------------------------------------------------
def _task_data(name: str, tmp_path: Path, n: int = 12, fingerprint: str = "x") -> TaskData:
    cases = [Case(case_id=f"c{i:02d}", images=(tmp_path / f"img{i}.nii.gz",), label=tmp_path / f"lab{i}.nii.gz") for i in range(n)]
    return TaskData(task=get_task(name), root=tmp_path, cases=cases, synthetic=True, fingerprint=fingerprint)


def _entries(methods, hparams=None):
    hparams = hparams or {}
    out = []
    for text in methods:
        name, variant = parse_method_entry(text)
        out.append(MethodEntry(name, {**hparams.get(name, {}), **variant}))
    return out


def _plan(tmp_path, *, task="btcv", methods=("csi", "dae", "csm", "scratch"), fractions="100%,25%", seeds=(0,), hparams=None, **kw):
    return build_plan(methods=_entries(methods, hparams), task_data=[_task_data(task, tmp_path, fingerprint=kw.pop("fingerprint", "x"))],
                      fractions=parse_fractions(fractions), seeds=list(seeds), profile=SMOKE, cache_dir=tmp_path / "cache", **kw)


def _group(plan, method, backbone=None, seed=0):
    found = [g for g in plan.jobs if g.method == method and (backbone is None or g.backbone == backbone) and g.seed == seed]
    assert len(found) == 1, [(g.method, g.backbone, g.seed) for g in plan.jobs]
    return found[0]


def test_plan_csm_is_na_on_btcv_with_reason(tmp_path):
    """Cross-series masking on single-series BTCV is planned as n/a with a reason, not dropped or crashed."""
    plan = _plan(tmp_path)
    csm = _group(plan, "csm")
    assert csm.na_reason and "series" in csm.na_reason
    assert csm.pretrain is None and csm not in plan.runnable()
    assert [c.fraction for c in csm.cells] == ["100%", "25%"]


def test_plan_scratch_once_per_backbone_used(tmp_path):
    """Scratch runs once per backbone of a runnable method (unet2d for csi, swin_unetr for dae; not vit)."""
    plan = _plan(tmp_path, seeds=(0, 1))
    for seed in (0, 1):
        scratch = sorted(g.backbone for g in plan.jobs if g.method == "scratch" and g.seed == seed)
        assert scratch == ["swin_unetr", "unet2d"]
    brats_plan = _plan(tmp_path, task="brats")
    assert sorted(g.backbone for g in brats_plan.jobs if g.method == "scratch") == ["swin_unetr", "unet2d", "vit"]


def test_plan_scratch_follows_backbone_override(tmp_path):
    """With --backbone swin_unetr, csi is n/a (it needs unet2d) and scratch runs only on swin_unetr."""
    plan = _plan(tmp_path, methods=("csi", "dae"), backbone="swin_unetr")
    assert _group(plan, "csi").na_reason and "2D" in _group(plan, "csi").na_reason
    assert [g.backbone for g in plan.jobs if g.method == "scratch"] == ["swin_unetr"]


def test_plan_cells_share_fixed_test_set_and_nested_labels(tmp_path):
    """Within a seed every method has the same test ids (each seed its own split); labelled ids are nested train cases."""
    plan = _plan(tmp_path, seeds=(0, 3), fractions="100%,25%,10%")
    tests = {seed: {tuple(g.test_ids) for g in plan.runnable() if g.seed == seed} for seed in (0, 3)}
    assert all(len(t) == 1 for t in tests.values()) and tests[0] != tests[3]
    for group in plan.runnable():
        (test_ids,) = tests[group.seed]
        assert set(group.train_ids).isdisjoint(test_ids)
        labelled = [set(c.labeled_ids) for c in group.cells]
        assert labelled[2] <= labelled[1] <= labelled[0] == set(group.train_ids)
        assert [c.n_labeled for c in group.cells] == [7, 2, 1]  # 12 cases: 3 test, 2 validation (20 %), 7 to label


def test_pretrain_key_independent_of_fractions(tmp_path):
    """Fractions share one pretraining: the key does not change with the fraction list."""
    a = _plan(tmp_path, task="brats", fractions="100%")  # brats: DAE's contrastive loss needs several modalities
    b = _plan(tmp_path, task="brats", fractions="100%,25%,5")
    for method in ("csi", "dae"):
        assert _group(a, method).pretrain.key == _group(b, method).pretrain.key
    assert _group(b, "scratch", "unet2d").pretrain is None


def test_pretrain_key_changes_with_hparams_seed_and_data(tmp_path):
    """A changed hyperparameter, seed or data fingerprint gives another pretraining key (and cell ids)."""
    base = _plan(tmp_path, task="brats", seeds=(0, 1))  # brats: DAE's contrastive loss needs several modalities
    tuned = _plan(tmp_path, task="brats", seeds=(0, 1), hparams={"csi": {"pool_size": 7}})
    other_data = _plan(tmp_path, task="brats", seeds=(0, 1), fingerprint="y")
    key = _group(base, "csi").pretrain.key
    assert _group(tuned, "csi").pretrain.key != key
    assert _group(base, "csi", seed=1).pretrain.key != key
    assert _group(other_data, "csi").pretrain.key != key
    assert _group(tuned, "dae").pretrain.key == _group(base, "dae").pretrain.key  # other methods unaffected
    assert _group(tuned, "csi").method_config.pool_size == 7 and _group(tuned, "csi").method_overrides == {"pool_size": 7}
    assert {c.cell_id for c in _group(tuned, "csi").cells}.isdisjoint(c.cell_id for c in _group(base, "csi").cells)


def test_job_round_trips_through_json_and_points_into_cache(tmp_path):
    """Every planned Job (n/a ones too) survives JSON exactly: typed fields, the method's config object,
    recipes, tuples; its checkpoint path is the content-hashed cache path."""
    plan = _plan(tmp_path, task="brats", methods=("csi", "dae:cmcl=false", "csm", "ladp", "scratch"))
    for job in plan.jobs:
        again = Job.from_json(job.to_json())
        assert again == job and type(again.method_config) is type(job.method_config)
        assert isinstance(again.roi, tuple) and isinstance(again.cells[0].labeled_ids, tuple)
    csi = _group(plan, "csi")
    assert csi.pretrain.path == str((tmp_path / "cache").resolve() / "pretrained" / f"{csi.pretrain.key}.pt")
    assert csi.roi == tuple(SMOKE.rois["unet2d"]) and csi.pretrain.steps > 0 and csi.finetune_steps > 0
    assert _group(plan, "scratch", "unet2d").pretrain is None
    dae = _group(plan, "dae")
    assert dae.method_config.cmcl is False and json.loads(dae.to_json())["method_config"]["cmcl"] is False


def test_resume_selects_cells_without_editing_the_job(tmp_path):
    """with_cells returns a new Job holding only the chosen cells; the planned Job is unchanged (frozen)."""
    job = _group(_plan(tmp_path), "csi")
    keep = {job.cells[1].cell_id}
    selected = job.with_cells(keep)
    assert [c.cell_id for c in selected.cells] == list(keep) and len(job.cells) == 2
    with pytest.raises(Exception):
        job.cells = ()  # frozen dataclass


def test_plan_rejects_unknown_hparam(tmp_path):
    """An unknown hyperparameter is a BenchmarkInputError naming the method."""
    with pytest.raises(BenchmarkInputError, match="csi"):
        _plan(tmp_path, hparams={"csi": {"nope": 1}})
    with pytest.raises(BenchmarkInputError, match="pool_size"):
        _plan(tmp_path, hparams={"csi": {"pool_size": 2}})


def test_content_hash_stable_and_order_free():
    """content_hash ignores dict key order and changes with any value."""
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert len(content_hash({"a": 1}, 8)) == 8


# ---- ResultStore ---------------------------------------------------------------------------------------
def _record(cell_id="csi|unet2d|btcv|100%|seed0|fold0|h", status="done", fraction="100%", seed=0, method="csi", **extra):
    return {"cell_id": cell_id, "method": method, "backbone": "unet2d", "task": "btcv", "fraction": fraction, "n_labeled": 9,
            "seed": seed, "fold": 0, "status": status, "reason": extra.pop("reason", ""), "label_aware": False, "pretrain_hash": "k",
            "pretrain_reused": False, "pretrain_seconds": 1.0, "finetune_seconds": 2.0, "device_hours": 0.001,
            "config": json.dumps({"pool_size": 5}), **extra}


def _rows(values, fraction="100%", seed=0, method="csi"):
    return [{"method": method, "backbone": "unet2d", "task": "btcv", "fraction": fraction, "n_labeled": 9, "seed": seed, "fold": 0,
             "case_id": f"case{i}", "metric": "dice_mean", "value": v, "scope": "case"} for i, v in enumerate(values)]


def test_store_writes_valid_csvs(tmp_path):
    """add_cell writes results.csv and cells.csv with the documented columns and the run name."""
    store = ResultStore(tmp_path / "out", "run1")
    store.add_cell(_record(), _rows([0.5, 0.7]))
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    assert list(results.columns) == RESULT_COLUMNS and list(cells.columns) == CELL_COLUMNS
    assert results["value"].tolist() == [0.5, 0.7] and (results["run"] == "run1").all()
    assert cells["status"].tolist() == ["done"] and json.loads(cells["config"][0]) == {"pool_size": 5}
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_store_replaces_earlier_attempt_of_same_cell(tmp_path):
    """Re-adding a cell replaces its record and its rows; other cells are kept."""
    store = ResultStore(tmp_path, "run")
    store.add_cell(_record(), _rows([0.1, 0.2]))
    store.add_cell(_record(cell_id="other", fraction="25%"), _rows([0.9], fraction="25%"))
    store.add_cell(_record(), _rows([0.3, 0.4]))
    cells = store.cells()
    assert sorted(cells["cell_id"]) == ["csi|unet2d|btcv|100%|seed0|fold0|h", "other"]
    results = store.results()
    assert sorted(results.loc[results["fraction"] == "100%", "value"]) == [0.3, 0.4]
    assert results.loc[results["fraction"] == "25%", "value"].tolist() == [0.9]


def test_store_finished_cells_only_done(tmp_path):
    """finished_cells lists 'done' cells, not 'n/a' or 'failed' ones; 'n/a' survives the CSV round trip."""
    store = ResultStore(tmp_path, "run")
    assert store.finished_cells() == set()
    store.add_cell(_record(cell_id="a"), _rows([0.5]))
    store.add_cell(_record(cell_id="b", status="n/a", reason="needs 2 series", method="csm"), [])
    store.add_cell(_record(cell_id="c", status="failed", reason="boom", seed=1), [])
    assert store.finished_cells() == {"a"}
    assert store.cells().set_index("cell_id").loc["b", "status"] == "n/a"
    # a new store object on the same folder (a resumed run) sees the same state
    assert ResultStore(tmp_path, "run").finished_cells() == {"a"}


def test_store_failed_write_keeps_previous_table(tmp_path, monkeypatch):
    """If writing fails midway, the previous results.csv is left intact (temp file + rename)."""
    store = ResultStore(tmp_path, "run")
    store.add_cell(_record(cell_id="a"), _rows([0.5]))
    before = (tmp_path / "results.csv").read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store_module.os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.add_cell(_record(cell_id="b", fraction="25%"), _rows([0.9], fraction="25%"))
    monkeypatch.undo()
    assert (tmp_path / "results.csv").read_text() == before
    assert store.finished_cells() == {"a"}


def test_store_other_config_does_not_delete_done_cell_rows(tmp_path):
    """Two cells differing only in config (cell_id) both keep their per-case rows while both are 'done'."""
    store = ResultStore(tmp_path, "run")
    store.add_cell(_record(cell_id="csi|...|cfgA"), _rows([0.1, 0.2]))
    store.add_cell(_record(cell_id="csi|...|cfgB", config=json.dumps({"pool_size": 7})), _rows([0.8, 0.9]))
    assert store.finished_cells() == {"csi|...|cfgA", "csi|...|cfgB"}
    assert len(store.results()) == 4


def test_store_write_json(tmp_path):
    """write_json writes sorted, readable JSON atomically."""
    path = ResultStore(tmp_path, "run").write_json("config.json", {"b": 1, "a": [Path("x")]})
    assert json.loads(path.read_text()) == {"a": ["x"], "b": 1}


def test_duplicate_fractions_are_one_fraction():
    """'25%,25.0%' and repeated items give one fraction, so no two cells share an id."""
    assert [f.label for f in parse_fractions("25%,100%,25.0%,25%")] == ["25%", "100%"]


def test_plan_csi_is_na_when_fewer_patients_than_sources(tmp_path):
    """CSI needs N different patients among the training cases; fewer -> n/a with the reason, not a worker crash."""
    td = _task_data("brats", tmp_path, n=6)  # 6 cases -> 4 training cases (< N = 5)
    plan = build_plan(methods=_entries(["csi"]), task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE, cache_dir=tmp_path)
    csi = _group(plan, "csi")
    assert csi.na_reason and "N = 5" in csi.na_reason
    wider = build_plan(methods=_entries(["csi"], {"csi": {"pool_size": 3, "sources_per_mixture": 2}}), task_data=[td],
                       fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE, cache_dir=tmp_path)
    assert _group(wider, "csi").na_reason is None


def test_method_variants_are_separate_groups_with_their_overrides(tmp_path):
    """--methods dae,dae:cmcl=false:noise=false plans DAE and its ablation side by side (one scratch)."""
    assert parse_method_entry("dae:cmcl=false:noise_variance=0.2") == ("dae", {"cmcl": False, "noise_variance": 0.2})
    plan = _plan(tmp_path, task="brats", methods=("dae", "dae:cmcl=false"))
    daes = [g for g in plan.jobs if g.method == "dae"]
    assert [g.method_overrides for g in daes] == [{}, {"cmcl": False}]
    assert daes[0].method_config.cmcl is True and daes[1].method_config.cmcl is False
    assert daes[0].pretrain.key != daes[1].pretrain.key
    assert {c.cell_id for c in daes[0].cells}.isdisjoint(c.cell_id for c in daes[1].cells)
    assert [g.method for g in plan.jobs].count("scratch") == 1
    with pytest.raises(BenchmarkInputError, match="no_such"):
        _plan(tmp_path, task="brats", methods=("dae:no_such=1",))
    with pytest.raises(BenchmarkInputError, match="METHOD:KEY=VALUE"):
        parse_method_entry("dae:cmcl")


def test_cli_accepts_variants_and_rejects_unknown_base_method(capsys):
    """The CLI validates the method part of a variant before any work."""
    from benchmark.cli import main

    assert main(["--methods", "nope:cmcl=false", "--tasks", "brats"]) == 2
    assert "unknown method 'nope:cmcl=false'" in capsys.readouterr().err


def test_seeds_are_random_splits_and_folds_partition_the_cases(tmp_path):
    """Seed 0 keeps the task's hold-out split, other seeds draw other splits; k folds test every case once."""
    from benchmark.plan import kfold_splits, task_splits

    ids = [f"c{i:02d}" for i in range(12)]
    splits = task_splits(ids, seeds=[0, 1], folds=1, test_fraction=0.25, split_seed=0)
    assert splits[(0, 0)] == split_cases(ids, test_fraction=0.25, split_seed=0)
    assert splits[(1, 0)][1] != splits[(0, 0)][1]
    folds = kfold_splits(ids, folds=5, split_seed=3)
    tests = [t for _, t in folds]
    assert sorted(sum(tests, [])) == ids and all(2 <= len(t) <= 3 for t in tests)
    assert all(set(train).isdisjoint(test) and len(train) + len(test) == 12 for train, test in folds)
    with pytest.raises(BenchmarkInputError, match="folds"):
        kfold_splits(ids, folds=13, split_seed=0)
    plan = _plan(tmp_path, methods=("dae",), task="brats", seeds=(0, 1), folds=3)
    daes = [g for g in plan.jobs if g.method == "dae"]
    assert sorted((g.seed, g.fold) for g in daes) == [(s, f) for s in (0, 1) for f in range(3)]
    for g in daes:  # no test case in pretraining or fine-tuning
        assert set(g.test_ids).isdisjoint(g.pretrain.case_ids)
        assert all(set(g.test_ids).isdisjoint(c.labeled_ids) for c in g.cells)
        assert all(f"fold{g.fold}" in c.cell_id for c in g.cells)
    assert len({g.pretrain.key for g in daes}) == 6


@pytest.mark.parametrize("seed", range(6))
def test_classification_splits_are_stratified(seed):
    """With class strata every hold-out test set and every fold holds both classes, for any seed."""
    from benchmark.plan import kfold_splits

    ids = [f"c{i:02d}" for i in range(16)]
    strata = {i: int(n % 3 == 0) for n, i in enumerate(ids)}  # 6 positives, 10 negatives
    train, test = split_cases(ids, test_fraction=0.25, split_seed=seed, strata=strata)
    assert sorted(train + test) == ids and {strata[i] for i in test} == {0, 1}
    assert sum(strata[i] for i in test) == 2 and len(test) == 2 + 2  # round(0.25·6), round(0.25·10)
    folds = kfold_splits(ids, folds=3, split_seed=seed, strata=strata)
    assert sorted(sum((t for _, t in folds), [])) == ids
    assert all({strata[i] for i in t} == {0, 1} for _, t in folds)


# ---- the store owns the schema ------------------------------------------------------------------------------
def test_store_derives_rows_and_records_from_job_and_result(tmp_path):
    """result_rows / cell_record: case rows keep their case id, set-level rows (AUC) have scope 'set' and an empty
    case id; the record carries the variant label, resolved method config, overrides and versions."""
    from benchmark.job import CellResult
    from benchmark.store import cell_record, result_rows
    from benchmark.records import MetricRow

    job = _group(_plan(tmp_path, task="brats", methods=("dae:cmcl=false",)), "dae")
    cell = job.cells[0]
    result = CellResult(cell_id=cell.cell_id, rows=(MetricRow("dice_mean", 0.5, "c1"), MetricRow("auc", 0.75)), finetune_seconds=2.0,
                        pretrain_seconds=4.0, pretrain_reused=False, final_finetune_loss=0.1)
    store = ResultStore(tmp_path / "out", "run")
    store.add_cell(cell_record(job, cell, status="done", result=result, versions={"torch": "x"}), result_rows(job, cell, result))
    results = store.results()
    assert results[["case_id", "metric", "scope"]].values.tolist() == [["c1", "dice_mean", "case"], ["", "auc", "set"]]
    record = store.cells().iloc[0]
    assert record["variant"] == "cmcl=false" and json.loads(record["versions"]) == {"torch": "x"}
    config = json.loads(record["config"])
    assert config["method_config"]["cmcl"] is False and config["method_overrides"] == {"cmcl": False}
    assert config["protocol"]["finetune_foreground_prob"] == 0.33 and config["labeled_ids"] == list(cell.labeled_ids)
    assert record["device_hours"] == pytest.approx((2.0 + 4.0 / len(job.cells)) / 3600)


def test_store_reads_legacy_set_rows_and_writes_metric_info(tmp_path):
    """A results.csv from before the scope column: '__set__' rows read as set scope; metrics.csv lists directions."""
    legacy = [{"run": "r", "method": "m", "backbone": "vit", "task": "t", "fraction": "100%", "n_labeled": 1, "seed": 0, "fold": 0,
               "case_id": case, "metric": metric, "value": 0.5, "cell_id": "x"} for case, metric in (("c1", "correct"), ("__set__", "auc"))]
    pd.DataFrame(legacy).to_csv(tmp_path / "results.csv", index=False)
    table = ResultStore(tmp_path, "r").results()
    assert table["scope"].tolist() == ["case", "set"] and table["case_id"].tolist() == ["c1", ""]
    store = ResultStore(tmp_path, "r")
    store.add_metric_info("brats", kind_of(get_task("brats")).metric_info(get_task("brats")))
    store.add_metric_info("prostate158", kind_of(get_task("prostate158")).metric_info(get_task("prostate158")))
    info = pd.read_csv(tmp_path / "metrics.csv").set_index(["task", "metric"])
    assert bool(info.loc[("brats", "dice_mean"), "primary"]) and not bool(info.loc[("brats", "hd95_WT"), "higher_is_better"])
    assert ("brats", "dice_all") in info.index
    assert info.loc[("prostate158", "auc"), "scope"] == "set" and bool(info.loc[("prostate158", "auc"), "primary"])
    assert ("prostate158", "prob_positive") not in info.index  # a prediction, not a leaderboard metric


# ---- command line: one syntax for hyperparameters -----------------------------------------------------------
def test_hparam_uses_the_variant_syntax(tmp_path):
    """--hparam METHOD:KEY=VALUE (as a --methods variant) sets every row of the method; the dotted form is
    refused with the corrected spelling; values parse as JSON where they can."""
    from benchmark.cli import build_parser, build_request, parse_value

    args = build_parser().parse_args(["--methods", "dae,dae:cmcl=false", "--tasks", "brats", "--hparam", "dae:mask_ratio=0.5",
                                      "--cache-dir", str(tmp_path)])
    request = build_request(args)
    assert [m.overrides for m in request.methods] == [{"mask_ratio": 0.5}, {"mask_ratio": 0.5, "cmcl": False}]
    bad = build_parser().parse_args(["--methods", "csi", "--tasks", "brats", "--hparam", "csi.pool_size=7"])
    with pytest.raises(BenchmarkInputError, match="csi:pool_size=7"):
        build_request(bad)
    assert parse_value("false") is False and parse_value("[1, 2]") == [1, 2] and parse_value("mixup") == "mixup"


# ---- SI-paper variants in the plan (restart, fine-tuning augmentation, label-aware pretraining) ----------------
def test_restart_fine_tunes_twice_without_pretraining(tmp_path):
    """CNN-restart has no pretext task: no pretraining key, two supervised rounds per cell."""
    plan = _plan(tmp_path, task="brats", methods=("restart",))
    restart = next(g for g in plan.jobs if g.method == "restart")
    assert restart.pretrain is None and restart.finetune_rounds == 2
    scratch = next(g for g in plan.jobs if g.method == "scratch")
    assert scratch.finetune_rounds == 1 and scratch.backbone == restart.backbone


def test_finetune_augmentation_is_part_of_the_cell_but_not_of_the_pretraining(tmp_path):
    """--finetune-aug mixup makes new cells (own config id) that reuse the same pretrained checkpoint."""
    from benchmark.records import FinetuneSettings

    plain = _plan(tmp_path, task="brats", methods=("csi",), fractions="100%")
    mixed = _plan(tmp_path, task="brats", methods=("csi",), fractions="100%", finetune=FinetuneSettings(augmentation="mixup", mixup_alpha=0.2))
    default_alpha = _plan(tmp_path, task="brats", methods=("csi",), fractions="100%", finetune=FinetuneSettings(augmentation="mixup"))
    a, b, c = (next(g for g in p.jobs if g.method == "csi") for p in (plain, mixed, default_alpha))
    assert a.pretrain.key == b.pretrain.key
    assert a.cells[0].cell_id != b.cells[0].cell_id
    assert b.finetune.augmentation == "mixup" and b.finetune.mixup_alpha == 0.2 and a.finetune.augmentation == "none"
    assert c.finetune.mixup_alpha == c.protocol.mixup_alpha == 0.4  # the protocol's named default


def test_label_aware_pretraining_sees_only_the_labels_of_its_fraction(tmp_path):
    """LADP is pretrained once per fraction, on exactly that fraction's labelled cases (no label leak)."""
    plan = _plan(tmp_path, task="brats", methods=("ladp", "ddp"))
    ladp = [g for g in plan.jobs if g.method == "ladp"]
    assert len(ladp) == 2 and all(len(g.cells) == 1 for g in ladp)
    for group in ladp:
        assert group.label_aware
        assert group.pretrain.case_ids == group.cells[0].labeled_ids
        assert not set(group.pretrain.case_ids) & set(group.test_ids)
    assert ladp[0].pretrain.key != ladp[1].pretrain.key
    ddp = [g for g in plan.jobs if g.method == "ddp"]
    assert len(ddp) == 1 and len(ddp[0].cells) == 2 and set(ddp[0].pretrain.case_ids) == {*ddp[0].train_ids, *ddp[0].val_ids}
    assert not ddp[0].label_aware


# ---- validation split ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["brats", "btcv", "wmh", "feta", "hie", "msd_brain", "prostate158", "mri_cls"])
def test_validation_test_and_labelled_cases_are_disjoint_for_every_seed_and_fold(tmp_path, task):
    """For every task, seed and fold: validation cases are held out of the training cases, disjoint from the test
    cases and from every labelled subset, never pretrained on by a label-aware method, and sized from the task."""
    from benchmark.plan import split_validation

    methods = ("ladp", "scratch") if get_task(task).kind == "segmentation" else ("csm", "scratch")
    for folds in (1, 3):
        td = _task_data(task, tmp_path, n=18)
        if get_task(task).kind == "classification":
            td = TaskData(task=td.task, root=tmp_path, synthetic=True, fingerprint="x",
                          cases=[dataclasses.replace(c, target=i % 2) for i, c in enumerate(td.cases)])
        plan = build_plan(methods=_entries(methods), task_data=[td], fractions=parse_fractions("100%,25%"), seeds=[0, 1],
                          profile=SMOKE, cache_dir=tmp_path / "cache", folds=folds)
        for job in plan.runnable():
            val, test, train = set(job.val_ids), set(job.test_ids), set(job.train_ids)
            assert val and not val & test and not val & train and not train & test
            assert all(not val & set(c.labeled_ids) for c in job.cells)
            if job.label_aware:
                assert not val & set(job.pretrain.case_ids)
            n = len(train) + len(val)
            wanted = td.task.validation if isinstance(td.task.validation, int) else round(td.task.validation * n)
            if td.task.kind == "classification":  # stratified: every class validates (its AUC is defined)
                targets = {c.case_id: c.target for c in td.cases}
                assert {targets[i] for i in val} == {0, 1}
            else:
                assert len(val) == max(1, min(wanted, n // 3))
    fit, val = split_validation([f"c{i}" for i in range(30)], validation=0.2, seed=3, strata={f"c{i}": i % 2 for i in range(30)})
    assert len(val) == 6 and {int(v[1:]) % 2 for v in val} == {0, 1}
    with pytest.raises(BenchmarkInputError, match="validation"):
        split_validation(["only"], validation=0.2, seed=0)


def test_apply_params_resolves_everything_a_searched_configuration_changes(tmp_path):
    """A search trial's parameters: Config keys (CSI's M̃ changes the pretraining network's input channels), the
    pretraining recipe (pretrain_*), the fine-tuning recipe (finetune_*); a new pretraining key only when a pretext
    parameter changes, so trials that differ in fine-tuning only share one pretraining; new cell ids."""
    from benchmark.methods import get_method
    from benchmark.plan import apply_params

    job = _group(_plan(tmp_path, task="brats", methods=("csi",)), "csi")
    params = {"num_mixtures": 3, "sources_per_mixture": 2, "pool_size": 5, "pretrain_batch_size": 2, "finetune_lr": 0.005}
    tuned = apply_params(job, params, search_budget=4)
    assert tuned.method_config.num_mixtures == 3 and tuned.tuned_params == params and tuned.search_budget == 4
    assert tuned.pretrain_channels == tuple(get_method("csi").backbone_channels(tuned.method_config, in_channels=4)) != job.pretrain_channels
    assert tuned.pretrain.recipe.batch_size == 2 and tuned.finetune_recipe.lr == 0.005
    assert tuned.pretrain.key != job.pretrain.key and tuned.pretrain.path.endswith(f"{tuned.pretrain.key}.pt")
    assert {c.cell_id for c in tuned.cells}.isdisjoint(c.cell_id for c in job.cells)
    assert apply_params(job, {"finetune_lr": 0.005}).pretrain.key == job.pretrain.key
    assert Job.from_json(tuned.to_json()) == tuned
    with pytest.raises(BenchmarkInputError, match="csi"):
        apply_params(job, {"num_mixtures": 9})
