"""Issue 21's report statistics against oracles: the exact Friedman p (scipy.stats.permutation_test, the published
critical values), the Nemenyi critical difference (Demšar 2006), Wilcoxon's smallest p (scipy), Holm by default
(statsmodels), the unit of analysis (per-split means from 3 splits), undefined distances of empty predictions, the
direction table without metrics.csv, the per-backbone ranking, and the rules that attach published rows."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from report_fixtures import CASES, cell, rows_for
from reports import build_report
from reports.load import default_direction, default_primary, runs_from_frames
from reports.published import METHODS, matches, paper_results, target
from reports.ranking import rank
from reports.render import markdown_table
from reports.stats import (WILCOXON_MIN_N, friedman_nemenyi, friedman_null, friedman_permutation_p, nemenyi_cd,
                           wilcoxon_smallest_p)
from reports.tables import MIN_SPLITS, build_tables, task_rows


def _rank_sum_squares(*samples):
    ranks = stats.rankdata(np.stack(samples), axis=0)  # samples: one per method, aligned over blocks
    return float((ranks.sum(axis=1) ** 2).sum())


# ---- Friedman: exact permutation p -------------------------------------------------------------------------------
@pytest.mark.parametrize("n, k, ties", [(3, 3, False), (4, 3, True), (3, 4, False), (5, 3, False), (2, 5, True)])
def test_friedman_exact_p_equals_scipy_permutation_test(n, k, ties):
    """The exact p equals scipy.stats.permutation_test enumerating every within-block arrangement ((k!)^N of them),
    ties included (a block's own mid-ranks permuted)."""
    rng = np.random.default_rng(n * 10 + k)
    blocks = rng.normal(size=(n, k)) + np.linspace(0, 1, k)
    if ties:
        blocks = np.round(blocks * 2) / 2
        blocks[0, :2] = blocks[0, 0]  # at least one tie
    p, how = friedman_permutation_p(blocks)
    oracle = stats.permutation_test(list(blocks.T), _rank_sum_squares, permutation_type="samples", n_resamples=np.inf,
                                    alternative="greater", vectorized=False)
    assert how == "exact" and p == pytest.approx(oracle.pvalue, rel=1e-9)


# Critical values of Friedman's χ²_r at α = 0.05 (and 0.01): the smallest value whose exact upper-tail probability is at
# most α, as published in the tables derived from Friedman (1937) and reprinted in statistics textbooks.
CRITICAL_05 = {(3, 3): 6.000, (3, 4): 6.500, (3, 5): 6.400, (3, 6): 7.000, (3, 7): 7.143, (3, 8): 6.250, (3, 9): 6.222,
               (3, 10): 6.200, (4, 2): 6.000, (4, 3): 7.400, (4, 4): 7.800, (4, 5): 7.800, (4, 6): 7.600, (5, 2): 7.600,
               (5, 3): 8.533, (5, 4): 8.800}
CRITICAL_01 = {(3, 4): 8.000, (3, 5): 8.400, (3, 6): 9.000, (4, 3): 9.000, (4, 4): 9.600, (5, 3): 10.13}


@pytest.mark.parametrize("alpha, table", [(0.05, CRITICAL_05), (0.01, CRITICAL_01)])
def test_friedman_exact_distribution_reproduces_published_critical_values(alpha, table):
    for (k, n), published in table.items():
        doubled = np.tile(2 * np.arange(1, k + 1), (n, 1))  # no ties: every block's ranks 1..k (doubled)
        values, probabilities = friedman_null(doubled)
        chi2 = 12 / (n * k * (k + 1)) * values / 4 - 3 * n * (k + 1)
        tail = np.cumsum(probabilities[::-1])[::-1]  # P(χ²_r >= value)
        assert probabilities.sum() == pytest.approx(1.0)
        assert chi2[tail <= alpha].min() == pytest.approx(published, abs=5e-3), (k, n)
    # and the familiar small-table p-values: k = 3, N = 3, all blocks agreeing -> χ² = 6, p = 6/216
    p, _ = friedman_permutation_p(np.tile([1.0, 2.0, 3.0], (3, 1)))
    assert p == pytest.approx(6 / 216)


def test_friedman_monte_carlo_is_labelled_seeded_and_close_to_exact():
    rng = np.random.default_rng(3)
    blocks = rng.normal(size=(6, 4)) + np.array([0.0, 0.3, 0.6, 0.9])
    exact, how = friedman_permutation_p(blocks)
    mc, label = friedman_permutation_p(blocks, max_work=10, n_resamples=20_000, seed=5)
    assert how == "exact" and label == "Monte-Carlo (20,000 permutations, seed 5)"
    assert mc == friedman_permutation_p(blocks, max_work=10, n_resamples=20_000, seed=5)[0]  # fixed seed
    assert abs(mc - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000) + 1e-4


def test_friedman_result_carries_scipy_statistic_chi2_p_and_critical_difference():
    rng = np.random.default_rng(1)
    scores = pd.DataFrame(rng.normal(size=(4, 5)) + np.arange(5) * 0.5, index=[f"t{i}" for i in range(4)], columns=list("abcde"))
    result = friedman_nemenyi(scores, {p: True for p in scores.index})
    scipy_result = stats.friedmanchisquare(*[scores[c] for c in scores.columns])
    assert result.statistic == pytest.approx(scipy_result.statistic) and result.p_chi2 == pytest.approx(scipy_result.pvalue)
    assert result.p == pytest.approx(friedman_permutation_p(scores.to_numpy())[0]) and result.p_method == "exact"
    assert result.cd == pytest.approx(nemenyi_cd(5, 4))


# ---- Nemenyi critical difference ---------------------------------------------------------------------------------
def test_nemenyi_critical_difference_matches_demsar_and_scikit_posthocs():
    """CD = q_α √(k(k+1)/6N) with Demšar (2006) Table 5a's q_0.05; two methods are Nemenyi-different (scikit-posthocs
    p < 0.05) exactly when their mean ranks differ by more than CD."""
    import scikit_posthocs as sp

    q_05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}
    for k, q in q_05.items():
        assert nemenyi_cd(k, 6) == pytest.approx(q * np.sqrt(k * (k + 1) / 36), abs=2e-3)
    rng = np.random.default_rng(0)
    blocks = pd.DataFrame(rng.normal(size=(12, 5)) + np.arange(5) * 0.6)
    p = sp.posthoc_nemenyi_friedman(blocks).to_numpy()
    mean_ranks = blocks.rank(axis=1).mean().to_numpy()
    cd = nemenyi_cd(5, 12)
    differs = np.abs(mean_ranks[:, None] - mean_ranks[None, :]) > cd
    assert ((p < 0.05) == differs).all() and differs.any() and not differs.all()


# ---- Wilcoxon below n = 6 ------------------------------------------------------------------------------------------
def test_wilcoxon_cannot_reach_005_below_six_pairs():
    for n in range(1, 9):
        assert wilcoxon_smallest_p(n) == pytest.approx(stats.wilcoxon(np.arange(1.0, n + 1)).pvalue)  # all one sign
    assert wilcoxon_smallest_p(WILCOXON_MIN_N - 1) > 0.05 > wilcoxon_smallest_p(WILCOXON_MIN_N)


# ---- tables: unit of analysis, Holm by default, the note ----------------------------------------------------------
def _runs(values_by_method: dict, *, seeds=(0,), metric="dice_mean", higher=True, extra_rows=()):
    """One brats column (100%): method -> per-seed arrays of per-case values (or one array reused per seed)."""
    results, cells = [], []
    for method, values in values_by_method.items():
        for seed in seeds:
            rec = cell("r", method, "unet2d", "brats", "100%", 9, seed, config_id=method)
            cells.append(rec)
            per_seed = values[seed] if isinstance(values, dict) else values
            results += rows_for(rec, metric, np.asarray(per_seed, dtype=float))
            results += [r | {"cell_id": rec["cell_id"], "seed": seed} for r in extra_rows if r["method"] == method]
    metrics = pd.DataFrame([{"task": "brats", "metric": metric, "higher_is_better": higher, "primary": True, "scope": "case"}])
    return runs_from_frames(pd.DataFrame(results), pd.DataFrame(cells), metrics)


BASE = np.array([0.50, 0.55, 0.60, 0.52, 0.58, 0.54])
NOISE = np.array([0.02, -0.03, 0.01, -0.02, 0.03, -0.01])


def test_one_seed_tests_cases_and_says_it_compares_single_runs():
    table = build_tables(_runs({"scratch": BASE, "csi": BASE + 0.05 + NOISE}), holm=False)[0]
    c = table.cells[("csi (unet2d)", "100%")]
    assert c.vs_scratch.unit == "case" and c.vs_scratch.n == 6 and c.p_scratch == pytest.approx(stats.ttest_rel(BASE + 0.05 + NOISE, BASE).pvalue)
    note = table.note()
    assert "paired over matched test cases (same seed, fold and case; n = 6) where fewer than 3 splits match" in note
    assert "compares single training runs, not methods" in note and "per-split means" not in note
    assert "no correction for multiple comparisons (--no-holm)" in note


def test_three_seeds_test_per_split_means_as_the_si_paper():
    per_seed = {s: BASE + 0.02 * s for s in range(MIN_SPLITS)}
    gains = {0: 0.05, 1: 0.01, 2: 0.03}
    method = {s: per_seed[s] + gains[s] + NOISE for s in range(MIN_SPLITS)}
    table = build_tables(_runs({"scratch": per_seed, "csi": method}, seeds=range(MIN_SPLITS)), holm=False)[0]
    c = table.cells[("csi (unet2d)", "100%")]
    a = [np.mean(method[s]) for s in range(MIN_SPLITS)]
    b = [np.mean(per_seed[s]) for s in range(MIN_SPLITS)]
    assert (c.vs_scratch.unit, c.vs_scratch.n) == ("split", 3) and c.p_scratch == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert "paired over per-split means" in table.note() and "single training runs" not in table.note()


def test_holm_is_the_default_and_equals_statsmodels():
    from statsmodels.stats.multitest import multipletests

    runs = _runs({"scratch": BASE, "csi": BASE + np.array([0.03, 0.01, 0.05, 0.02, 0.04, 0.01]),
                  **{f"m{i}": BASE + NOISE * (i + 1) / 10 for i in range(4)}})
    default, raw = build_tables(runs)[0], build_tables(runs, holm=False)[0]
    labels = [r.label for r in default.rows if not r.is_scratch]
    p_raw = [raw.cells[(l, "100%")].p_scratch for l in labels]
    assert [default.cells[(l, "100%")].p_scratch for l in labels] == pytest.approx(list(multipletests(p_raw, method="holm")[1]))
    assert default.holm and "Holm correction over the 5 comparisons vs scratch" in default.note()


def test_holm_leaves_the_garbage_collector_as_it_found_it():
    """holm() freezes the GC around statsmodels' gc.collect() (13 s of a 26 s report): only a freeze of its own."""
    import gc

    from reports.stats import holm

    p = [0.01, 0.04, float("nan"), 0.03]
    assert gc.get_freeze_count() == 0
    holm(p)
    assert gc.get_freeze_count() == 0  # unfrozen again
    gc.freeze()
    try:
        assert holm(p)[2] != holm(p)[2] and holm(p)[0] == pytest.approx(0.03)
        assert gc.get_freeze_count() > 0  # a caller's freeze stays (not unfrozen by holm)
    finally:
        gc.unfreeze()


def test_wilcoxon_note_says_it_cannot_reach_005_below_six_pairs():
    table = build_tables(_runs({"scratch": BASE, "csi": BASE + 0.05 + NOISE}), test="wilcoxon")[0]
    assert "The Wilcoxon signed-rank test cannot reach p < 0.05 below n = 6 pairs (its smallest two-sided p is 2/2^n: 0.0625 at n = 5)." in table.note()
    assert "cannot reach" not in build_tables(_runs({"scratch": BASE, "csi": BASE + 0.05}), test="ttest")[0].note()


def test_cli_holm_default_on_no_holm_off_and_holm_accepted():
    from benchmark.cli import build_parser, report_options
    from benchmark.errors import BenchmarkInputError

    parse = build_parser().parse_args
    assert report_options(parse([])).holm is True and report_options(parse(["--holm"])).holm is True
    assert report_options(parse(["--no-holm"])).holm is False
    assert report_options(parse(["--paper-dataset", "mri_cls=Breast2023"])).paper_datasets == (("mri_cls", "Breast2023"),)
    with pytest.raises(BenchmarkInputError, match="TASK=DATASET"):
        report_options(parse(["--paper-dataset", "Breast2023"]))


# ---- undefined distances: empty predictions ---------------------------------------------------------------------
def _hd95_runs():
    """scratch misses ET in case0 and case1 (NaN + empty_pred flag); csi hallucinates TC on an empty truth in case2 (NaN,
    no flag): what the segmentation tasks now store (tasks/base.py, tasks/metrics.py)."""
    hd = {"scratch": np.array([np.nan, np.nan, 5.0, 6.0, 7.0, 8.0]), "csi": np.array([4.0, 4.5, np.nan, 5.0, 6.0, 6.5])}
    flags = []
    for method, missed in (("scratch", {"case0", "case1"}), ("csi", set())):
        for c in CASES:
            flags.append({"method": method, "case_id": c, "metric": "empty_pred_ET", "value": float(c in missed), "scope": "case"})
            flags.append({"method": method, "case_id": c, "metric": "empty_pred_TC", "value": 0.0, "scope": "case"})
    return _runs(hd, metric="hd95_mean", higher=False, extra_rows=flags), hd


def test_undefined_distances_are_left_out_counted_and_empty_predictions_named():
    runs, hd = _hd95_runs()
    assert "empty_pred_ET" not in set(runs.results["metric"]) and len(runs.empty_pred) == 24  # flags, not a table
    table = build_tables(runs, holm=False)[0]
    scratch, csi = table.cells[("scratch (unet2d)", "100%")], table.cells[("csi (unet2d)", "100%")]
    assert scratch.mean == pytest.approx(np.nanmean(hd["scratch"])) and csi.mean == pytest.approx(np.nanmean(hd["csi"]))
    assert (scratch.n_cases, scratch.n_undefined, scratch.n_empty_pred) == (6, 2, 2)
    assert (csi.n_undefined, csi.n_empty_pred) == (1, 0)  # a hallucination on an empty truth: undefined, not an empty prediction
    assert csi.vs_scratch.n == 3  # pairs with an undefined side dropped
    assert csi.p_scratch == pytest.approx(stats.ttest_rel(hd["csi"][3:], hd["scratch"][3:]).pvalue)
    md = markdown_table(table)
    assert "| method (backbone) | 100% (n=9) | 100%: undefined |" in md
    assert "| scratch (unet2d) | 6.500 | 2/6 (2 empty pred.) |" in md and "1/6 (0 empty pred.) |" in md
    assert "Metrics Reloaded" in table.note() and "left out of the mean and of the tests" in table.note()


def test_a_table_without_undefined_values_has_no_extra_column_and_old_runs_have_no_flags(tmp_path):
    table = build_tables(_runs({"scratch": BASE, "csi": BASE + 0.05}))[0]
    assert not table.has_undefined and "undefined" not in markdown_table(table) and "Metrics Reloaded" not in table.note()
    runs = _runs({"scratch": np.array([np.nan, 1, 2, 3, 4, 5.0]), "csi": BASE}, metric="masd", higher=False)  # no flags (older run)
    masd = build_tables(runs)[0].cells[("scratch (unet2d)", "100%")]
    assert (masd.n_undefined, masd.n_empty_pred, masd.undefined_text) == (1, None, "1/6")


def test_report_csv_and_tex_carry_the_undefined_counts(tmp_path):
    runs, _ = _hd95_runs()
    folder = tmp_path / "run"
    folder.mkdir()
    frames = runs.results.drop(columns=["_dir"]), runs.cells.drop(columns=["_dir"])
    flags = runs.empty_pred.assign(metric="empty_pred_" + runs.empty_pred["region"], scope="case").drop(columns=["region"])
    pd.concat([frames[0], flags]).to_csv(folder / "results.csv", index=False)
    frames[1].to_csv(folder / "cells.csv", index=False)
    paths = build_report([folder], out_dir=folder, title="t", n_boot=0)
    row = pd.read_csv(paths["csv"]).query("method == 'scratch'").iloc[0]
    assert (row.n_undefined, row.n_empty_pred, row.n_cases) == (2, 2, 6)
    assert "100\\%: undefined" in paths["tex"].read_text() and "2/6 (2 empty pred.)" in paths["html"].read_text()


# ---- directions without metrics.csv --------------------------------------------------------------------------------
def test_known_directions_without_metrics_csv():
    """Older folders have no metrics.csv: CoPer and LPIPS are distances (lower is better), like HD95 and MASD."""
    lower = ["lpips", "coper", "hd95_mean", "hd95_ET", "masd", "hd_lesion", "assd", "surface_distance"]
    higher = ["psnr", "ssim", "dice_mean", "nsd", "auc", "accuracy", "lesion_recall", "dice_synth_mean", "coperative"]
    assert not any(default_direction(m) for m in lower) and all(default_direction(m) for m in higher)
    assert default_primary(["ssim", "psnr", "coper", "lpips", "dice_synth_mean"]) == "psnr"  # synthesis: PSNR, as the kind says
    results, cells = [], []
    rec = cell("r", "l1", "vgg_unet", "brats_synthesis", "100%", 9, 0)
    cells.append(rec)
    for metric in ("psnr", "ssim", "coper", "lpips"):
        results += rows_for(rec, metric, np.ones(len(CASES)))
    runs = runs_from_frames(pd.DataFrame(results), pd.DataFrame(cells))
    assert [runs.direction("brats_synthesis", m) for m in ("psnr", "ssim", "coper", "lpips")] == [True, True, False, False]
    assert runs.primary("brats_synthesis") == "psnr"


# ---- ranking within a backbone ---------------------------------------------------------------------------------------
def test_ranking_is_per_backbone_with_critical_difference():
    """Two backbones: each ranks only its own configurations; the better architecture does not rank above the other's."""
    results, cells = [], []
    for task, shift in (("t1", 0.0), ("t2", 0.05), ("t3", -0.05)):
        for backbone, level in (("unet2d", 0.8), ("swin_unetr", 0.4)):
            for k, method in enumerate(("scratch", "a", "b")):
                rec = cell("r", method, backbone, task, "100%", 9, 0, config_id=f"{method}-{backbone}")
                cells.append(rec)
                results += rows_for(rec, "dice_mean", level + shift + 0.02 * k + NOISE / 10)
    rankings = rank(build_tables(runs_from_frames(pd.DataFrame(results), pd.DataFrame(cells))), n_boot=20)
    assert {r.backbone for r in rankings} == {"unet2d", "swin_unetr"}
    for ranking in rankings:
        assert set(ranking.summary.index) == {f"{m} ({ranking.backbone})" for m in ("scratch", "a", "b")}
        assert ranking.summary.loc[f"b ({ranking.backbone})", "rank"] == 1
        f = ranking.friedman
        assert f.p == pytest.approx(6 / 216) and f.p_method == "exact"  # 3 problems, all ranking alike: 3!/(3!)^3
        assert f.cd == pytest.approx(nemenyi_cd(3, 3))


def test_markdown_prints_the_exact_friedman_p_and_the_critical_difference(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    results, cells = [], []
    for task in ("t1", "t2", "t3"):
        for k, method in enumerate(("scratch", "a", "b", "c")):
            rec = cell("r", method, "unet2d", task, "100%", 9, 0, config_id=method)
            cells.append(rec)
            results += rows_for(rec, "dice_mean", 0.5 + 0.1 * k + NOISE)
    pd.DataFrame(cells).to_csv(folder / "cells.csv", index=False)
    pd.DataFrame(results).to_csv(folder / "results.csv", index=False)
    md = build_report([folder], out_dir=folder, title="t", n_boot=10)["markdown"].read_text()
    assert "### Backbone unet2d" in md and "One ranking per backbone" in md
    p_exact = 24 / 24 ** 3  # every block ranks the four alike: 4!/(4!)^3
    assert f"p = {p_exact:.2g} (from the exact permutation distribution" in md
    assert f"CD = {nemenyi_cd(4, 3):.2f} mean ranks at α = 0.05" in md


# ---- published rows: attachment rules ------------------------------------------------------------------------------
def _row(method, backbone, *, cells_config=None, overrides=None):
    config = json.dumps({"method_overrides": overrides or {}, **(cells_config or {})})
    frame = pd.DataFrame([{"cell_id": "x", "method": method, "backbone": backbone, "config_id": "c", "finetune_aug": "none",
                           "missing_series": 0.0, "label_aware": False, "config": config, "variant": ""}])
    from reports.load import normalise_cells

    return task_rows(normalise_cells(frame.assign(task="t", fraction="100%")))[0]


def _published(task, metric, method, backbone, *, in_channels=None, paper_datasets=None):
    config = {} if in_channels is None else {"in_channels": in_channels}
    pubs = matches(task=task, metric=metric, row=_row(method, backbone), fraction="100%", n_labeled="9", profiles=["smoke"],
                   synthetic=False, config=config, paper_datasets=paper_datasets)
    return sorted((p.table, p.value) for p in pubs)


def test_ladp_denoising_autoencoder_row_is_not_the_disruptive_autoencoder():
    """LADP Table 1's "DAE [16]" is Vincent et al.'s denoising autoencoder: beside ``denoising_ae``, never ``dae``."""
    assert _published("hie", "dice_lesion", "denoising_ae", "vgg_unet") == [("1", 0.5908)]
    assert _published("hie", "masd", "denoising_ae", "vgg_unet") == [("1", 2.7483)]
    assert _published("hie", "dice_lesion", "dae", "vgg_unet") == [] and _published("hie", "dice_lesion", "dae", "swin_unetr") == []
    assert target("label_aware_denoising", "dae").method == "denoising_ae" and target("disruptive_autoencoders", "dae").method == "dae"
    assert "dae" not in set(paper_results().query("paper == 'label_aware_denoising'")["method"])


def test_csm_single_series_rows_only_beside_single_series_cells():
    """CSM Table II (single-series) beside a one-series cell only; Tables I / V (multi-series) never beside one."""
    assert _published("msd_brain", "dice_mean", "csm", "vit", in_channels=4) == [("I", 0.8345)]
    assert _published("msd_brain", "dice_mean", "csm", "vit", in_channels=1) == [("II", 0.8013)]
    assert _published("msd_brain", "dice_mean", "csm", "vit") == [("I", 0.8345)]  # older run, series unknown: the task's own (multi)
    assert _published("prostate158", "auc", "dino", "vit", in_channels=3) == [("IV", 0.8077)]
    assert _published("prostate158", "auc", "dino", "vit", in_channels=1) == [("IV", 0.7142)]


def test_breast2023_only_with_the_users_say_so():
    assert _published("mri_cls", "auc", "csm", "vit", in_channels=3) == []
    assert _published("mri_cls", "auc", "csm", "vit", in_channels=3, paper_datasets={"mri_cls": "breast2023"}) == [("III", 0.8407)]
    assert _published("mri_cls", "auc", "csm", "vit", in_channels=3, paper_datasets={"mri_cls": "OtherCohort"}) == []
    pubs = matches(task="mri_cls", metric="auc", row=_row("csm", "vit"), fraction="100%", n_labeled="9", profiles=["paper"],
                   synthetic=False, config={"in_channels": 3}, paper_datasets={"mri_cls": "Breast2023"})
    assert "--paper-dataset" in pubs[0].protocol


def test_unetr_and_vit_scratch_rows_only_beside_their_own_backbone():
    assert _published("msd_brain", "dice_mean", "scratch", "unetr", in_channels=4) == [("I", 0.7805)]
    assert _published("msd_brain", "dice_mean", "scratch", "vit", in_channels=4) == []
    assert _published("msd_brain", "dice_mean", "scratch", "unetr", in_channels=1) == [("II", 0.7667)]
    assert _published("btcv", "dice_mean", "scratch", "unetr") == [("2", 0.891)]
    assert _published("prostate158", "auc", "scratch", "vit", in_channels=3) == [("IV", 0.7492)]
    assert _published("msd_brain", "dice_mean", "dino", "vit", in_channels=4) == [("I", 0.7902)]


def test_coper_psnr_and_ssim_rows_carry_the_8bit_slice_scale_note():
    for metric in ("psnr", "ssim"):
        pubs = matches(task="brats_synthesis", metric=metric, row=_row("l1", "vgg_unet"), fraction="100%", n_labeled="9",
                       profiles=["smoke"], synthetic=True)
        assert pubs and all("per 2D slice" in p.note or "of each 2D slice" in p.note for p in pubs)
        assert all("8-bit range [0, 255]" in p.note for p in pubs)


def test_every_paper_method_name_has_one_mapping_line():
    """The mapping is a table: a new method's published rows need one line (or none, when the names agree)."""
    table = paper_results()
    for r in table.itertuples():
        goal = target(r.paper, r.method)
        assert goal.method and isinstance(goal.overrides, tuple)
    assert METHODS["dino"].method == "dino" and METHODS["unetr_scratch"].backbone == "unetr"
