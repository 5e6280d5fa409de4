"""Statistics of the report, all delegated to scipy / statsmodels / scikit-posthocs.

* :func:`paired_test`  -- two-sided paired t-test (``scipy.stats.ttest_rel``, as the SI paper's Tables 1-2)
  or Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) over matched values; pairs with a NaN on
  either side are dropped before the test and not counted in n.
* :func:`holm`         -- Holm's step-down correction (``statsmodels.stats.multitest.multipletests``).
* :func:`rank_problems`, :func:`friedman_nemenyi` -- challenge-style ranking (rank per task x fraction,
  then mean rank), Friedman test (``scipy.stats.friedmanchisquare``) and Nemenyi post-hoc
  (``scikit_posthocs.posthoc_nemenyi_friedman``) for the critical-difference diagram.
* :func:`bootstrap_ranks` -- ranking stability: test cases resampled with replacement.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

TESTS = {"ttest": "two-sided paired t-test (scipy.stats.ttest_rel)",
         "wilcoxon": "two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon)"}
ALPHA = 0.05


@dataclass(frozen=True)
class Paired:
    """Result of one paired comparison a − b."""

    n: int
    delta: float  # mean of a − b over the pairs
    p: float  # NaN when the test cannot be made (n < 2)

    @property
    def testable(self) -> bool:
        return self.n >= 2 and np.isfinite(self.p)


def paired_test(a, b, *, test: str = "ttest") -> Paired:
    """Paired two-sided test of a vs b (equal-length sequences, aligned pairs)."""
    if test not in TESTS:
        raise ValueError(f"stat test {test!r}: expected one of {sorted(TESTS)}")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(len(a))
    if n == 0:
        return Paired(n=0, delta=float("nan"), p=float("nan"))
    diff = a - b
    delta = float(diff.mean())
    if n < 2:
        return Paired(n=n, delta=delta, p=float("nan"))
    if np.all(diff == 0):
        return Paired(n=n, delta=delta, p=1.0)  # identical values: no evidence of any difference
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant differences: t = ±inf, p = 0 (scipy's own answer)
        p = stats.ttest_rel(a, b).pvalue if test == "ttest" else stats.wilcoxon(diff).pvalue
    return Paired(n=n, delta=delta, p=float(p))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values of one family; NaN entries (untestable) are left out and stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    finite = np.isfinite(p)
    if finite.any():
        from statsmodels.stats.multitest import multipletests

        out[finite] = multipletests(p[finite], method="holm")[1]
    return list(out)


def rank_problems(scores: pd.DataFrame, higher_is_better: dict) -> pd.DataFrame:
    """scores: index problems (task, fraction), columns methods, NaN = not run -> ranks (1 = best, ties averaged)
    among the methods present in each problem. ``higher_is_better``: problem -> bool."""
    ranks = scores.copy() * np.nan
    for problem, row in scores.iterrows():
        present = row.dropna()
        if len(present):
            ranks.loc[problem, present.index] = present.rank(ascending=not higher_is_better[problem], method="average")
    return ranks


@dataclass
class Friedman:
    methods: list[str]  # methods present in every problem (the complete block design tested)
    problems: int
    statistic: float
    p: float
    mean_ranks: pd.Series  # over the complete block, 1 = best
    nemenyi: pd.DataFrame | None  # pairwise p-values


def friedman_nemenyi(scores: pd.DataFrame, higher_is_better: dict) -> Friedman | None:
    """Friedman test over the methods present in every problem; None when fewer than 3 such methods or 2 problems."""
    complete = scores.dropna(axis=1, how="any")
    if complete.shape[1] < 3 or complete.shape[0] < 2:
        return None
    from scipy.stats import friedmanchisquare
    import scikit_posthocs as sp

    oriented = complete.copy()
    for problem in oriented.index:  # higher = better in every block, so ranks read alike
        if not higher_is_better[problem]:
            oriented.loc[problem] = -oriented.loc[problem]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stat, p = friedmanchisquare(*[oriented[c].to_numpy() for c in oriented.columns])
        nemenyi = sp.posthoc_nemenyi_friedman(oriented.reset_index(drop=True))
    ranks = oriented.rank(axis=1, ascending=False).mean()
    return Friedman(methods=list(complete.columns), problems=int(complete.shape[0]), statistic=float(stat), p=float(p),
                    mean_ranks=ranks, nemenyi=nemenyi)


def bootstrap_ranks(problems: dict, higher_is_better: dict, methods: list[str], *, n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """Ranking stability over test-case resamples.

    problems: problem -> list over splits of DataFrames (index methods, columns test cases; one column
    for set-level metrics, which are not resampled). Each draw resamples the test cases of every split
    with replacement (the same cases for every method), recomputes the per-split means, their mean over
    splits, the rank per problem and the mean rank over problems, then the overall rank.
    Returns methods x ranks: the share of draws that put each method at each overall rank."""
    rng = np.random.default_rng(seed)
    m = len(methods)
    index = {name: i for i, name in enumerate(methods)}
    rank_sum = np.zeros((m, n_boot))
    counts = np.zeros((m, 1))
    from scipy.stats import rankdata

    for problem, splits in problems.items():
        per_split = []
        for table in splits:
            values = table.reindex(methods).to_numpy(dtype=float)  # methods x cases
            n_cases = values.shape[1]
            if n_cases == 0:
                continue
            if n_cases == 1:
                per_split.append(np.repeat(values[:, :1], n_boot, axis=1))
                continue
            draws = rng.integers(0, n_cases, size=(n_boot, n_cases))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                means = np.nanmean(values[:, draws], axis=2)  # methods x draws
                fallback = np.nanmean(values, axis=1, keepdims=True)
            per_split.append(np.where(np.isnan(means), fallback, means))
        if not per_split:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = np.nanmean(np.stack(per_split), axis=0)  # methods x draws
        present = ~np.isnan(score[:, 0])
        if not present.any():
            continue
        oriented = score[present] if higher_is_better[problem] else -score[present]
        ranks = rankdata(-oriented, axis=0, method="average")
        rank_sum[present] += ranks
        counts[present] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean_rank = rank_sum / counts
    overall = rankdata(np.where(np.isnan(mean_rank), np.inf, mean_rank), axis=0, method="min")  # methods x draws
    share = pd.DataFrame({r: (overall == r).mean(axis=1) for r in range(1, m + 1)}, index=methods)
    share.index.name = "method"
    del index
    return share
