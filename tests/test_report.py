"""The report (reports/): statistics against scipy on fixture tables, bold / marker logic, Holm, the
cross-task ranking, the three paired-table bugs, every output format, old and new run-folder schemas.
Fixture run folders are written with pandas (tests/report_fixtures.py): nothing trains, no Ray."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from report_fixtures import GAIN, cell, rows_for, write_run
from reports import build_report, leaderboard_tables, paired_tables
from reports.load import load_runs, runs_from_frames
from reports.ranking import rank
from reports.stats import bootstrap_ranks, holm, paired_test
from reports.tables import build_tables


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "run1")


@pytest.fixture(scope="module")
def tables(run):
    """Uncorrected (--no-holm), so each p is scipy's own; Holm, the default, is tested on its own."""
    return {(t.task, t.metric): t for t in build_tables(load_runs([run]), test="ttest", holm=False)}


def _pairs(run: Path, method: str, baseline: str, *, metric: str, fraction: str = "100%", aug: str = "none"):
    """The matched (seed, fold, case) values of two configurations, straight from the CSV files."""
    results = pd.read_csv(run / "results.csv", dtype={"case_id": str})
    cells = pd.read_csv(run / "cells.csv", keep_default_na=False)
    chosen = cells[(cells.finetune_aug == aug) & (cells.fraction == fraction)]
    values = results[(results.metric == metric) & results.cell_id.isin(chosen.cell_id)]
    a = values[values.method == method].set_index(["seed", "fold", "case_id"])["value"]
    b = values[values.method == baseline].set_index(["seed", "fold", "case_id"])["value"]
    joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    return joined["a"].to_numpy(), joined["b"].to_numpy()


# ---- statistics against scipy -----------------------------------------------------------------------------------
def test_paired_ttest_and_wilcoxon_equal_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.7, 0.1, 12), rng.normal(0.65, 0.1, 12)
    t = paired_test(a, b, test="ttest")
    assert t.n == 12 and t.delta == pytest.approx(np.mean(a - b)) and t.p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    w = paired_test(a, b, test="wilcoxon")
    assert w.p == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert paired_test([0.5, 0.6], [0.5, 0.6]).p == 1.0  # identical: no difference
    assert not paired_test([0.5], [0.4]).testable  # one pair: no test
    with pytest.raises(ValueError, match="stat test"):
        paired_test(a, b, test="mannwhitney")


def _split_means(run: Path, method: str, baseline: str, *, metric: str, fraction: str = "100%"):
    """Per-split (seed, fold) means of two configurations over their test cases, straight from the CSV files."""
    results = pd.read_csv(run / "results.csv", dtype={"case_id": str})
    cells = pd.read_csv(run / "cells.csv", keep_default_na=False)
    values = results[(results.metric == metric) & results.cell_id.isin(cells[(cells.finetune_aug == "none") & (cells.fraction == fraction)].cell_id)]
    means = values.groupby(["method", "seed", "fold"])["value"].mean()
    return means[method].to_numpy(), means[baseline].to_numpy()


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # scipy on the constant per-split differences of the fixture
def test_cell_p_values_are_scipy_on_matched_splits_or_cases(run, tables):
    """With 3 seeds (100%) the test pairs the 3 per-split means (the SI paper's unit: a training run); with one seed
    (25%) it pairs the 6 matched test cases of that single run. Both equal scipy on the values from the CSV."""
    a, b = _split_means(run, "csi", "scratch", metric="dice_mean")
    cell = tables[("brats", "dice_mean")].cells[("csi (unet2d)", "100%")]
    assert (cell.vs_scratch.n, cell.vs_scratch.unit) == (len(a), "split") == (3, "split")
    assert cell.vs_scratch.delta == pytest.approx(GAIN.mean())
    noisy_a, noisy_b = _split_means(run, "inpainting", "csi", metric="hd95_mean")  # differences that vary: a finite p
    noisy = tables[("brats", "hd95_mean")].cells[("inpainting (unet2d)", "100%")]
    assert noisy.vs_best.unit == "split" and noisy.p_best == pytest.approx(stats.ttest_rel(noisy_b, noisy_a).pvalue)
    assert cell.p_scratch == pytest.approx(stats.ttest_rel(a, b).pvalue)
    single_a, single_b = _pairs(run, "csi", "scratch", metric="dice_mean", fraction="25%")
    single = tables[("brats", "dice_mean")].cells[("csi (unet2d)", "25%")]
    assert (single.vs_scratch.n, single.vs_scratch.unit) == (len(single_a), "case") == (6, "case")
    assert single.p_scratch == pytest.approx(stats.ttest_rel(single_a, single_b).pvalue)
    wil = {(t.task, t.metric): t for t in build_tables(load_runs([run]), test="wilcoxon", holm=False)}
    assert wil[("brats", "dice_mean")].cells[("csi (unet2d)", "100%")].p_scratch == pytest.approx(stats.wilcoxon(a - b).pvalue) == 0.25
    assert wil[("brats", "dice_mean")].cells[("csi (unet2d)", "25%")].p_scratch == pytest.approx(stats.wilcoxon(single_a - single_b).pvalue)


def test_nan_pairs_are_dropped_and_not_counted(run, tables):
    """Bug 3: MASD's NaN (one-empty rule) left p = nan and counted in n; now the pair is dropped."""
    a, b = _pairs(run, "csi", "scratch", metric="masd", fraction="25%")
    cell = tables[("brats", "masd")].cells[("csi (unet2d)", "25%")]
    assert len(a) == 4 and cell.vs_scratch.n == 4  # 6 cases, 2 with NaN
    assert np.isfinite(cell.p_scratch) and cell.p_scratch == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert cell.mean == pytest.approx(np.nanmean(np.r_[a]))  # mean over the finite cases


def _issue_fixture(with_mixup: bool):
    """The issue's example: csi vs scratch Δ +0.067, Wilcoxon p 0.031, n 6; a mixup scratch 0.6 lower in the same folder."""
    results, cells = [], []
    base = np.array([0.70, 0.72, 0.75, 0.68, 0.71, 0.73])
    configs = [("scratch", "none", base), ("csi", "none", base + GAIN)]
    if with_mixup:
        configs += [("scratch", "mixup", base - 0.6), ("csi", "mixup", base + GAIN - 0.6)]
    for method, aug, values in configs:
        rec = cell("r", method, "unet2d", "brats", "100%", 9, 0, config_id=f"{method}-{aug}", finetune_aug=aug)
        cells.append(rec)
        results += rows_for(rec, "dice_mean", values)
    return pd.DataFrame(results), pd.DataFrame(cells)


def test_baseline_is_scratch_with_the_same_finetune_settings():
    """Bug 1: with a --finetune-aug mixup run in the same folder, csi was paired with both scratch variants
    (Δ +0.367, p 0.0005, n 12); now only with the scratch row fine-tuned the same way."""
    for with_mixup in (False, True):
        table = paired_tables(*_issue_fixture(with_mixup), test="wilcoxon", holm=False)["brats"]
        assert table.loc["csi (unet2d)", "100%"] == f"Δ +0.067 (p={stats.wilcoxon(GAIN).pvalue:.2g}, n=6)" == "Δ +0.067 (p=0.031, n=6)"
    assert table.loc["csi (unet2d) + mixup", "100%"] == "Δ +0.067 (p=0.031, n=6)"
    built = build_tables(runs_from_frames(*_issue_fixture(True)), test="wilcoxon")[0]
    assert built.cells[("csi (unet2d)", "100%")].baseline == "scratch (unet2d)"
    assert built.cells[("csi (unet2d) + mixup", "100%")].baseline == "scratch (unet2d) + mixup"


def test_configurations_with_the_same_label_do_not_collide(tmp_path):
    """Bug 2: two csi configurations whose labels read the same each keep their row and their comparison."""
    run = write_run(tmp_path / "run", collide=True)
    table = paired_tables(pd.read_csv(run / "results.csv", dtype={"case_id": str}),
                          pd.read_csv(run / "cells.csv", keep_default_na=False, na_values=[""]), test="ttest")["brats"]
    assert list(table.index) == ["csi (unet2d) cfg cfg1", "inpainting (unet2d)", "csi (unet2d) cfg cfg9"]
    assert table.loc["csi (unet2d) cfg cfg1", "100%"].startswith("Δ +0.067")
    assert table.loc["csi (unet2d) cfg cfg9", "100%"].startswith("Δ +0.167")


# ---- bold / markers / Holm ------------------------------------------------------------------------------------------
def _column(values_by_method: dict, *, metric="dice_mean", higher=True):
    results, cells = [], []
    for method, values in values_by_method.items():
        rec = cell("r", method, "unet2d", "brats", "100%", 9, 0, config_id=method)
        cells.append(rec)
        results += rows_for(rec, metric, np.asarray(values, dtype=float))
    metrics = pd.DataFrame([{"task": "brats", "metric": metric, "higher_is_better": higher, "primary": True, "scope": "case"}])
    return runs_from_frames(pd.DataFrame(results), pd.DataFrame(cells), metrics)


BASE = np.array([0.50, 0.55, 0.60, 0.52, 0.58, 0.54])
NOISE = np.array([0.02, -0.03, 0.01, -0.02, 0.03, -0.01])


def test_bold_best_and_not_significantly_different_markers_vs_scratch():
    """best: bold; a row within noise of it: bold (p ≥ 0.05); a clearly worse row: not bold. ▲/▼ vs scratch."""
    runs = _column({"scratch": BASE, "csi": BASE + 0.2, "dae": BASE + 0.195 + NOISE, "mae": BASE + 0.05 + NOISE / 4, "bad": BASE - 0.1 + NOISE / 5})
    table = build_tables(runs, test="ttest", holm=False)[0]
    c = {label: table.cells[(label, "100%")] for label, _ in table.cells}
    assert [r.label for r in table.rows][0] == "scratch (unet2d)"  # scratch heads its backbone
    assert c["csi (unet2d)"].bold and c["dae (unet2d)"].bold and not c["mae (unet2d)"].bold and not c["scratch (unet2d)"].bold
    assert c["dae (unet2d)"].p_best == pytest.approx(stats.ttest_rel(BASE + 0.2, BASE + 0.195 + NOISE).pvalue) and c["dae (unet2d)"].p_best >= 0.05
    assert c["mae (unet2d)"].p_best == pytest.approx(stats.ttest_rel(BASE + 0.2, BASE + 0.05 + NOISE / 4).pvalue)
    assert c["mae (unet2d)"].p_best < 0.05
    assert (c["csi (unet2d)"].marker, c["mae (unet2d)"].marker, c["bad (unet2d)"].marker, c["scratch (unet2d)"].marker) == ("better", "better", "worse", "")


def test_direction_comes_from_the_task_lower_is_better():
    """hd95 (lower is better): the lowest mean is the best, a lower value is significantly better than scratch."""
    runs = _column({"scratch": 10 + BASE, "csi": 8 + BASE + NOISE, "bad": 12 + BASE + NOISE}, metric="hd95_mean", higher=False)
    table = build_tables(runs, test="ttest", holm=False)[0]
    c = {label: table.cells[(label, "100%")] for label, _ in table.cells}
    assert c["csi (unet2d)"].bold and not c["bad (unet2d)"].bold
    assert c["csi (unet2d)"].marker == "better" and c["bad (unet2d)"].marker == "worse"
    assert "lower is better" in table.note()


def test_holm_equals_the_step_down_formula_and_can_remove_a_marker():
    p = [0.01, 0.04, 0.03, float("nan"), 0.005]
    finite = [0.01, 0.04, 0.03, 0.005]
    order = np.argsort(finite)
    expected = np.empty(4)
    running = 0.0
    for i, k in enumerate(order):  # Holm: (m - i) * p_(i), cumulative max, at most 1
        running = max(running, min(1.0, (4 - i) * finite[k]))
        expected[k] = running
    got = holm(p)
    assert np.isnan(got[3]) and np.allclose([got[0], got[1], got[2], got[4]], expected)
    # a marker that survives alone disappears under Holm when the table holds more comparisons
    gain = np.array([0.03, 0.01, 0.05, 0.02, 0.04, 0.01])  # t-test p ~ 0.01 vs scratch
    runs = _column({"scratch": BASE, "csi": BASE + gain, **{f"m{i}": BASE + NOISE * (i + 1) / 10 for i in range(6)}})
    plain, corrected = (build_tables(runs, test="ttest", holm=h)[0].cells[("csi (unet2d)", "100%")] for h in (False, True))
    assert plain.marker == "better" and plain.p_scratch == pytest.approx(stats.ttest_rel(BASE + gain, BASE).pvalue)
    assert corrected.p_scratch > plain.p_scratch and corrected.marker == ""
    assert "Holm correction over the 7 comparisons vs scratch" in build_tables(runs, test="ttest", holm=True)[0].note()


# ---- ranking ---------------------------------------------------------------------------------------------------------
def _rank_sum_squares(*samples):
    """Σ_j R_j² of methods' samples (one per method, aligned over blocks): the Friedman statistic up to constants."""
    ranks = stats.rankdata(np.stack(samples), axis=0)
    return float((ranks.sum(axis=1) ** 2).sum())


def test_ranking_mean_rank_friedman_and_bootstrap():
    """Ranks per (task, fraction), mean over problems; Friedman equals scipy on the complete block."""
    results, cells = [], []
    means = {"t1": {"a": 0.9, "b": 0.8, "c": 0.7, "scratch": 0.6}, "t2": {"a": 0.7, "b": 0.8, "c": 0.6, "scratch": 0.5},
             "t3": {"a": 0.95, "b": 0.85, "c": 0.9, "scratch": 0.4}}
    for task, per_method in means.items():
        for method, mean in per_method.items():
            rec = cell("r", method, "unet2d", task, "100%", 9, 0, config_id=method)
            cells.append(rec)
            results += rows_for(rec, "dice_mean", mean + NOISE / 10)
    tables = build_tables(runs_from_frames(pd.DataFrame(results), pd.DataFrame(cells)))
    rankings = rank(tables, n_boot=200)
    assert [r.backbone for r in rankings] == ["unet2d"]
    ranking = rankings[0]
    summary = ranking.summary
    assert summary.loc["a (unet2d)", "mean_rank"] == pytest.approx((1 + 2 + 1) / 3)
    assert summary.loc["b (unet2d)", "mean_rank"] == pytest.approx((2 + 1 + 3) / 3)
    assert summary.loc["scratch (unet2d)", "rank"] == 4 and list(summary.index[:1]) == ["a (unet2d)"]
    blocks = pd.DataFrame(means).T
    expected = stats.friedmanchisquare(*[blocks[m] for m in blocks.columns])
    assert ranking.friedman.p_chi2 == pytest.approx(expected.pvalue) and ranking.friedman.statistic == pytest.approx(expected.statistic)
    exact = stats.permutation_test([blocks[m].to_numpy() for m in blocks.columns], _rank_sum_squares, permutation_type="samples",
                                   n_resamples=np.inf, alternative="greater", vectorized=False)
    assert ranking.friedman.p_method == "exact" and ranking.friedman.p == pytest.approx(exact.pvalue)  # 3 problems: not the χ² p
    assert ranking.friedman.nemenyi.shape == (4, 4)
    share = ranking.stability
    assert np.allclose(share.sum(axis=1), 1.0) and share.loc["scratch (unet2d)", 4] == 1.0  # always last
    assert summary.loc["scratch (unet2d)", "kept_rank"] == 1.0


def test_bootstrap_is_deterministic_and_resamples_cases():
    cases = [f"c{i}" for i in range(8)]
    problem = {"p": [pd.DataFrame([np.linspace(0, 1, 8), np.linspace(0.1, 0.9, 8)[::-1]], index=["x", "y"], columns=cases)]}
    one = bootstrap_ranks(problem, {"p": True}, ["x", "y"], n_boot=300, seed=1)
    two = bootstrap_ranks(problem, {"p": True}, ["x", "y"], n_boot=300, seed=1)
    assert one.equals(two) and 0 < one.loc["x", 1] < 1  # equal means: either can win a resample


# ---- the report ------------------------------------------------------------------------------------------------------
def test_build_report_writes_every_format(run, tmp_path):
    site = tmp_path / "site"
    paths = build_report([run], out_dir=tmp_path / "out", publish_dir=site, title="Fixture board", test="ttest", holm=True)
    for key in ("markdown", "html", "csv", "tex", "leaderboard_html"):
        assert paths[key].exists(), key
    md = paths["markdown"].read_text()
    assert md.startswith("# Fixture board") and "## Ranking across tasks" in md
    assert md.index("### brats — dice_mean (main metric)") < md.index("### brats — dice_all") < md.index("### brats — hd95_mean")
    assert "| csm (vit) | n/a | n/a |" in md and "csm (vit) on brats: n/a – needs >= 2 series" in md
    assert "Holm correction" in md and "paired t-test" in md
    csv = pd.read_csv(paths["csv"])
    n_cells = sum(len(t.rows) * len(t.fractions) for t in build_tables(load_runs([run])))
    assert len(csv) == n_cells  # one row per table cell
    row = csv[(csv.metric == "dice_mean") & (csv.configuration == "csi (unet2d)") & (csv.fraction == "100%")].iloc[0]
    assert row.marker == "better" and row.n_pairs_vs_scratch == 3 and row.unit_vs_scratch == "split" and row.pretrain_hashes.startswith("hash-csi")
    assert row.wall_seconds == 270 and json.loads(row.method_config) == {"lr": 0.001} and "torch" in row.versions
    tex = paths["tex"].read_text()
    assert r"\toprule" in tex and r"\textbf{" in tex and r"$^{\blacktriangle}$" in tex and "dice\\_mean" in tex
    index = paths["html"].read_text()
    assert "task-brats.html" in index and "Ranking across tasks" in index and "<img" in index
    brats = (tmp_path / "out" / "task-brats.html").read_text()
    assert "brats-label-efficiency.png" in brats and "brats-per-case.png" in brats and "Reproducibility" in brats
    for kind in ("brats-label-efficiency", "brats-per-case", "rank-stability-unet2d", "rank-stability-vit"):
        assert (tmp_path / "out" / "plots" / f"{kind}.png").stat().st_size > 0 and (tmp_path / "out" / "plots" / f"{kind}.svg").exists()
    assert (site / "index.html").exists() and (site / "task-brats.html").exists() and (site / "plots" / "brats-per-case.png").exists()
    assert "http://" not in index and "https://" not in index  # no external assets


def test_published_numbers_beside_ours_with_protocol_notes(run, tables):
    """SI paper Table 1 (BraTS, 100/100 labelled): scratch 0.846, CSI 0.861 on dice_all, labelled as published."""
    runs = load_runs([run])
    from reports.build import attach_published

    built = build_tables(runs)
    attach_published(built, runs)
    table = next(t for t in built if t.metric == "dice_all")
    pubs = table.cells[("csi (unet2d)", "100%")].published
    assert [(p.value, p.table) for p in pubs] == [(0.861, "1")]
    assert "synthetic" in pubs[0].protocol and "profile smoke" in pubs[0].protocol and "9 labelled cases, paper 100" in pubs[0].protocol
    assert [(p.value, p.table) for p in table.cells[("csi (unet2d)", "25%")].published] == [(0.837, "2")]
    assert not table.cells[("inpainting (unet2d)", "100%")].published[0].protocol.startswith("ours: backbone")
    auc = next(t for t in built if t.metric == "auc")
    assert [p.value for p in auc.cells[("csm (vit)", "100%")].published] == [0.8458]


def test_old_schema_without_scope_metrics_or_variant(tmp_path):
    """Older folders: no scope (set rows have case id __set__), no metrics.csv, hparams_overrides, no versions."""
    run = write_run(tmp_path / "old", new_schema=False)
    assert not (run / "metrics.csv").exists()
    runs = load_runs([run])
    assert runs.primary("brats") == "dice_mean" and runs.primary("prostate158") == "auc"
    assert runs.direction("brats", "hd95_mean") is False and runs.direction("brats", "masd") is False
    assert runs.scope("prostate158", "auc") == "set" and "prob_positive" not in runs.task_metrics("prostate158")
    new = {(t.task, t.metric): t for t in build_tables(load_runs([write_run(tmp_path / "new")]))}
    old = {(t.task, t.metric): t for t in build_tables(runs)}
    for key in [("brats", "dice_mean"), ("brats", "masd"), ("prostate158", "auc")]:
        assert {k: c.text for k, c in old[key].cells.items()} == {k: c.text for k, c in new[key].cells.items()}
    auc = old[("prostate158", "auc")].cells[("csm (vit)", "100%")]  # set-level: paired over the 3 splits
    assert auc.vs_scratch.n == 3 and auc.p_scratch == pytest.approx(stats.ttest_rel([0.8, 0.85, 0.79], [0.6, 0.62, 0.58]).pvalue)


def test_several_runs_merge_and_a_rerun_replaces_its_cells(tmp_path):
    first = write_run(tmp_path / "a")
    second = tmp_path / "b"
    second.mkdir()
    results = pd.read_csv(first / "results.csv", dtype={"case_id": str})
    cells = pd.read_csv(first / "cells.csv", keep_default_na=False, na_values=[""])
    redo = cells[(cells.method == "csi") & (cells.fraction == "25%")].assign(run="b")
    rows = results[results.cell_id.isin(redo.cell_id)].assign(run="b")
    rows.loc[rows.metric == "dice_mean", "value"] = 0.9
    extra = cell("b", "dae", "swin_unetr", "brats", "100%", 9, 0, config_id="d")
    pd.concat([redo, pd.DataFrame([extra])]).to_csv(second / "cells.csv", index=False)
    pd.concat([rows, pd.DataFrame(rows_for(extra, "dice_mean", np.full(6, 0.4)))]).to_csv(second / "results.csv", index=False)
    table = next(t for t in build_tables(load_runs([first, second])) if t.metric == "dice_mean")
    assert table.cells[("csi (unet2d)", "25%")].text == "0.900"  # the later folder's attempt
    assert table.cells[("dae (swin_unetr)", "100%")].text == "0.400"
    assert table.cells[("dae (swin_unetr)", "25%")].text == "—"  # not run: a partial report stays valid
    assert table.cells[("csi (unet2d)", "100%")].n_splits == 3


def test_only_na_cells_give_a_valid_report(tmp_path):
    folder = tmp_path / "na"
    folder.mkdir()
    pd.DataFrame([cell("r", "csm", "vit", "btcv", "100%", 9, 0, status="n/a", reason="needs >= 2 series")]).to_csv(folder / "cells.csv", index=False)
    paths = build_report([folder], out_dir=folder, title="t")
    md = paths["markdown"].read_text()
    assert "| csm (vit) | n/a |" in md and "needs >= 2 series" in md
    assert paths["html"].exists()


def test_leaderboard_tables_keep_their_shape(run):
    results = pd.read_csv(run / "results.csv", dtype={"case_id": str})
    cells = pd.read_csv(run / "cells.csv", keep_default_na=False, na_values=[""])
    table = leaderboard_tables(results, cells)["brats"]
    assert list(table.columns) == ["100% (n=9)", "25% (n=2)"] and table.index[0] == "scratch (unet2d)"
    assert leaderboard_tables(results, cells, metric="masd")["brats"].loc["csm (vit)", "100% (n=9)"] == "n/a"


def test_report_imports_neither_torch_nor_ray(run, tmp_path):
    """Besides itself the report loads only the plain value modules (tests/test_layers.py REPORT_MAY_IMPORT: the
    records, with the one atomic writer, and the errors): no torch, Ray, MONAI, or other suite module."""
    code = ("import sys, pathlib, reports; reports.build_report([pathlib.Path(sys.argv[1])], out_dir=pathlib.Path(sys.argv[2]), "
            "title='t', n_boot=10); bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'monai', 'tasks') "
            "or m.startswith('benchmark.') and m not in ('benchmark.records', 'benchmark.errors')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code, str(run), str(tmp_path / "o")], check=True, cwd=Path(__file__).resolve().parents[1])


def test_critical_difference_validation_curves_and_tuning_records(tmp_path):
    """With >= 3 configurations on every task x fraction: Friedman + CD diagram; curves.csv -> validation plot;
    tuned_params / search_budget (the tuning issue's columns) reach the CSV and the task page."""
    folder = tmp_path / "run"
    folder.mkdir()
    results, cells, curves = [], [], []
    for task in ("t1", "t2", "t3"):
        for k, method in enumerate(("scratch", "a", "b", "c")):
            rec = cell("r", method, "unet2d", task, "100%", 9, 0, config_id=method)
            rec.update(tuned_params=json.dumps({"lr": 10.0 ** -(k + 2)}), search_budget=8)
            cells.append(rec)
            results += rows_for(rec, "dice_mean", 0.5 + 0.1 * k * (1 + (task == "t2")) + NOISE)
            curves += [{"cell_id": rec["cell_id"], "step": s, "metric": "val_dice", "value": 0.1 * s} for s in range(5)]
    pd.DataFrame(cells).to_csv(folder / "cells.csv", index=False)
    pd.DataFrame(results).to_csv(folder / "results.csv", index=False)
    pd.DataFrame(curves).to_csv(folder / "curves.csv", index=False)
    paths = build_report([folder], out_dir=folder, title="t", n_boot=50)
    assert (folder / "plots" / "critical-difference-unet2d.png").exists() and (folder / "plots" / "t1-validation.svg").exists()
    assert "Friedman test over the 4 configurations present in all 3 problems" in paths["markdown"].read_text()
    row = pd.read_csv(paths["csv"]).query("task == 't1' and method == 'a'").iloc[0]
    assert row.search_budget == 8 and json.loads(row.tuned_params) == [{"lr": 0.001}]
    assert "critical-difference-unet2d.png" in paths["html"].read_text() and "search budget" in (folder / "task-t1.html").read_text()


def test_latex_compiles_when_pdflatex_is_there(run, tmp_path):
    """leaderboard.tex inside a minimal document compiles (skipped without pdflatex: TeX is not a dependency)."""
    import shutil

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not found (Debian: apt-get install texlive-latex-recommended)")
    paths = build_report([write_run(tmp_path / "run", mixup=True, collide=True)], out_dir=tmp_path / "out", title="t", n_boot=10)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage[utf8]{inputenc}\\usepackage{booktabs,amssymb}"
                                      f"\\begin{{document}}\\input{{{paths['tex']}}}\\end{{document}}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]


def test_a_broken_table_names_the_file_and_the_columns(tmp_path):
    folder = write_run(tmp_path / "run")
    pd.read_csv(folder / "results.csv").drop(columns=["value"]).to_csv(folder / "results.csv", index=False)
    with pytest.raises(ValueError, match=r"results\.csv: missing column\(s\) \['value'\]"):
        load_runs([folder])


def test_baseline_pairs_only_with_scratch_of_the_same_downstream_settings():
    """Merged runs with another spatial augmentation / loss / TTA: a row's baseline is the scratch row fine-tuned and
    tested the same way (cells.csv's spatial_aug, finetune_loss, tta), never the other run's scratch."""
    import pandas as pd

    from reports.load import normalise_cells
    from reports.tables import task_rows

    base = {"task": "hie", "backbone": "vgg_unet", "fraction": "100%", "status": "done", "config": "", "variant": ""}
    cells = normalise_cells(pd.DataFrame([
        {**base, "cell_id": "a", "method": "scratch", "config_id": "1", "spatial_aug": "ladp", "finetune_loss": "dicefocal", "tta": "flip"},
        {**base, "cell_id": "b", "method": "ladp", "config_id": "2", "spatial_aug": "ladp", "finetune_loss": "dicefocal", "tta": "flip"},
        {**base, "cell_id": "c", "method": "scratch", "config_id": "3", "spatial_aug": "none", "finetune_loss": "default", "tta": "none"},
        {**base, "cell_id": "d", "method": "ladp", "config_id": "4"},  # an older run: no such columns -> the defaults
    ]))
    rows = {r.cell_ids[0]: r for r in task_rows(cells)}
    assert rows["b"].setting == rows["a"].setting != rows["c"].setting
    assert rows["d"].setting == rows["c"].setting  # absent columns read as none/default/none
