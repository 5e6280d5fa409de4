"""Planning (benchmark/plan.py), the results store (benchmark/store.py) and the leaderboard (reports/leaderboard.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from benchmark import store as store_module
from benchmark.errors import BenchmarkInputError
from benchmark.plan import TaskData, build_plan, labeled_subset, parse_fractions, split_cases
from benchmark.profiles import SMOKE
from benchmark.store import CELL_COLUMNS, RESULT_COLUMNS, ResultStore, content_hash, pretrain_checkpoint_path
from reports.leaderboard import leaderboard_tables, write_leaderboard
from tasks import Case, get_task


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


def _plan(tmp_path, *, task="btcv", methods=("csi", "dae", "csm", "scratch"), fractions="100%,25%", seeds=(0,), **kw):
    return build_plan(methods=list(methods), task_data=[_task_data(task, tmp_path, fingerprint=kw.pop("fingerprint", "x"))],
                      fractions=parse_fractions(fractions), seeds=list(seeds), profile=SMOKE, cache_dir=tmp_path / "cache", **kw)


def _group(plan, method, backbone=None, seed=0):
    found = [g for g in plan.groups if g.method == method and (backbone is None or g.backbone == backbone) and g.seed == seed]
    assert len(found) == 1, [(g.method, g.backbone, g.seed) for g in plan.groups]
    return found[0]


def test_plan_csm_is_na_on_btcv_with_reason(tmp_path):
    """Cross-series masking on single-series BTCV is planned as n/a with a reason, not dropped or crashed."""
    plan = _plan(tmp_path)
    csm = _group(plan, "csm")
    assert csm.na_reason and "series" in csm.na_reason
    assert csm.spec is None and csm.pretrain_key is None and csm not in plan.runnable()
    assert [c.fraction for c in csm.cells] == ["100%", "25%"]


def test_plan_scratch_once_per_backbone_used(tmp_path):
    """Scratch runs once per backbone of a runnable method (unet2d for csi, swin_unetr for dae; not vit)."""
    plan = _plan(tmp_path, seeds=(0, 1))
    for seed in (0, 1):
        scratch = sorted(g.backbone for g in plan.groups if g.method == "scratch" and g.seed == seed)
        assert scratch == ["swin_unetr", "unet2d"]
    brats_plan = _plan(tmp_path, task="brats")
    assert sorted(g.backbone for g in brats_plan.groups if g.method == "scratch") == ["swin_unetr", "unet2d", "vit"]


def test_plan_scratch_follows_backbone_override(tmp_path):
    """With --backbone swin_unetr, csi is n/a (it needs unet2d) and scratch runs only on swin_unetr."""
    plan = _plan(tmp_path, methods=("csi", "dae"), backbone="swin_unetr")
    assert _group(plan, "csi").na_reason and "unet2d" in _group(plan, "csi").na_reason
    assert [g.backbone for g in plan.groups if g.method == "scratch"] == ["swin_unetr"]


def test_plan_cells_share_fixed_test_set_and_nested_labels(tmp_path):
    """Within a seed every method has the same test ids (each seed its own split); labelled ids are nested train cases."""
    plan = _plan(tmp_path, seeds=(0, 3), fractions="100%,25%,10%")
    tests = {seed: {tuple(g.spec["test_ids"]) for g in plan.runnable() if g.seed == seed} for seed in (0, 3)}
    assert all(len(t) == 1 for t in tests.values()) and tests[0] != tests[3]
    for group in plan.runnable():
        (test_ids,) = tests[group.seed]
        assert set(group.spec["train_ids"]).isdisjoint(test_ids)
        labelled = [set(c.labeled_ids) for c in group.cells]
        assert labelled[2] <= labelled[1] <= labelled[0] == set(group.spec["train_ids"])
        assert [c.n_labeled for c in group.cells] == [9, 2, 1]


def test_pretrain_key_independent_of_fractions(tmp_path):
    """Fractions share one pretraining: the key does not change with the fraction list."""
    a = _plan(tmp_path, fractions="100%")
    b = _plan(tmp_path, fractions="100%,25%,5")
    for method in ("csi", "dae"):
        assert _group(a, method).pretrain_key == _group(b, method).pretrain_key
        assert _group(a, method).pretrain_key is not None
    assert _group(b, "scratch", "unet2d").pretrain_key is None


def test_pretrain_key_changes_with_hparams_seed_and_data(tmp_path):
    """A changed hyperparameter, seed or data fingerprint gives another pretraining key (and cell ids)."""
    base = _plan(tmp_path, seeds=(0, 1))
    tuned = _plan(tmp_path, seeds=(0, 1), hparams={"csi": {"pool_size": 7}})
    other_data = _plan(tmp_path, seeds=(0, 1), fingerprint="y")
    key = _group(base, "csi").pretrain_key
    assert _group(tuned, "csi").pretrain_key != key
    assert _group(base, "csi", seed=1).pretrain_key != key
    assert _group(other_data, "csi").pretrain_key != key
    assert _group(tuned, "dae").pretrain_key == _group(base, "dae").pretrain_key  # other methods unaffected
    assert _group(tuned, "csi").config["pool_size"] == 7
    assert {c.cell_id for c in _group(tuned, "csi").cells}.isdisjoint(c.cell_id for c in _group(base, "csi").cells)


def test_plan_spec_is_json_and_points_into_cache(tmp_path):
    """The worker spec is JSON-serialisable and its checkpoint path is the content-hashed cache path."""
    plan = _plan(tmp_path)
    csi = _group(plan, "csi")
    json.dumps(csi.spec)
    assert csi.spec["pretrain_path"] == str(pretrain_checkpoint_path(tmp_path / "cache", csi.pretrain_key))
    assert csi.spec["roi"] == list(SMOKE.rois["unet2d"])
    assert _group(plan, "scratch", "unet2d").spec["pretrain_path"] is None


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
             "case_id": f"case{i}", "metric": "dice_mean", "value": v} for i, v in enumerate(values)]


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


# ---- leaderboard -------------------------------------------------------------------------------------------
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
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
             for line in md.splitlines() if line.startswith("| ") and "method (backbone)" not in line}
    assert lines["csi (unet2d)"] == ["0.733 (0.189)", "0.200"]
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
    assert table.loc["scratch (unet2d)", hundred] == "–"  # no dice_spleen rows for scratch


def test_leaderboard_from_store_round_trip(tmp_path):
    """A table written by ResultStore produces the expected leaderboard (mean over test cases)."""
    store = ResultStore(tmp_path, "run")
    store.add_cell(_record(cell_id="a"), _rows([0.2, 0.4, 0.9]))
    store.add_cell(_record(cell_id="b", status="failed", reason="boom", fraction="25%"), [])
    md = write_leaderboard(tmp_path, title="t")[0].read_text()
    assert "| csi (unet2d) | 0.500 | failed |" in md
    assert "boom" in md


def test_leaderboard_with_only_na_cells(tmp_path):
    """A run whose cells are all n/a (no results.csv) still gets a leaderboard listing why."""
    store = ResultStore(tmp_path, "run")
    store.add_cell(_record(cell_id="x", status="n/a", reason="needs >= 2 series", method="csm"), [])
    md = write_leaderboard(tmp_path, title="t")[0].read_text()
    assert "| csm (unet2d) | n/a |" in md and "needs >= 2 series" in md


def test_duplicate_fractions_are_one_fraction():
    """'25%,25.0%' and repeated items give one fraction, so no two cells share an id."""
    assert [f.label for f in parse_fractions("25%,100%,25.0%,25%")] == ["25%", "100%"]


def test_plan_csi_is_na_when_fewer_patients_than_sources(tmp_path):
    """CSI needs N different patients among the training cases; fewer -> n/a with the reason, not a worker crash."""
    td = _task_data("brats", tmp_path, n=6)  # 6 cases -> 4 training cases (< N = 5)
    plan = build_plan(methods=["csi"], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE, cache_dir=tmp_path)
    csi = _group(plan, "csi")
    assert csi.na_reason and "N = 5" in csi.na_reason
    wider = build_plan(methods=["csi"], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE, cache_dir=tmp_path,
                       hparams={"csi": {"pool_size": 3, "sources_per_mixture": 2}})
    assert _group(wider, "csi").na_reason is None


def test_method_variants_are_separate_groups_with_their_overrides(tmp_path):
    """--methods dae,dae:cmcl=false:noise=false plans DAE and its ablation side by side (one scratch)."""
    from benchmark.plan import split_variant

    assert split_variant("dae:cmcl=false:noise_variance=0.2") == ("dae", {"cmcl": False, "noise_variance": 0.2})
    plan = _plan(tmp_path, task="brats", methods=("dae", "dae:cmcl=false"))
    daes = [g for g in plan.groups if g.method == "dae"]
    assert [g.hparams for g in daes] == [{}, {"cmcl": False}]
    assert daes[0].config["cmcl"] is True and daes[1].config["cmcl"] is False
    assert daes[0].pretrain_key != daes[1].pretrain_key
    assert {c.cell_id for c in daes[0].cells}.isdisjoint(c.cell_id for c in daes[1].cells)
    assert [g.method for g in plan.groups].count("scratch") == 1
    with pytest.raises(BenchmarkInputError, match="no_such"):
        _plan(tmp_path, task="brats", methods=("dae:no_such=1",))
    with pytest.raises(BenchmarkInputError, match="METHOD:KEY=VALUE"):
        split_variant("dae:cmcl")


def test_cli_accepts_variants_and_rejects_unknown_base_method(capsys):
    """The CLI validates the method part of a variant before any work."""
    from benchmark.cli import main

    assert main(["--methods", "nope:cmcl=false", "--tasks", "brats"]) == 2
    assert "unknown method 'nope:cmcl=false'" in capsys.readouterr().err


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
    daes = [g for g in plan.groups if g.method == "dae"]
    assert sorted((g.seed, g.fold) for g in daes) == [(s, f) for s in (0, 1) for f in range(3)]
    for g in daes:  # no test case in pretraining or fine-tuning
        assert set(g.spec["test_ids"]).isdisjoint(g.spec["pretrain_ids"])
        assert all(set(g.spec["test_ids"]).isdisjoint(c.labeled_ids) for c in g.cells)
        assert all(f"fold{g.fold}" in c.cell_id for c in g.cells)
    assert len({g.pretrain_key for g in daes}) == 6


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
