"""Statistics of the report, all delegated to scipy / statsmodels / scikit-posthocs.

* :func:`paired_test`  -- two-sided paired t-test (``scipy.stats.ttest_rel``, as the SI paper's Tables 1-2)
  or Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) over matched values; pairs with a NaN on
  either side are dropped before the test and not counted in n.
* :func:`holm`         -- Holm's step-down correction (``statsmodels.stats.multitest.multipletests``).
* :func:`wilcoxon_smallest_p` -- the smallest two-sided p the Wilcoxon signed-rank test can give with n pairs
  (2 / 2^n: 0.0625 at n = 5, so it cannot reach p < 0.05 below n = 6).
* :func:`rank_problems`, :func:`friedman_nemenyi` -- challenge-style ranking (rank per task x fraction,
  then mean rank), Friedman test (statistic: ``scipy.stats.friedmanchisquare``; p: the exact permutation
  distribution at small N x k, :func:`friedman_permutation_p`) and Nemenyi post-hoc
  (``scikit_posthocs.posthoc_nemenyi_friedman``) with its critical difference (:func:`nemenyi_cd`) for the
  critical-difference diagram.
* :func:`bootstrap_ranks` -- ranking stability: test cases resampled with replacement.
"""
from __future__ import annotations

import gc
import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

TESTS = {"ttest": "two-sided paired t-test (scipy.stats.ttest_rel)",
         "wilcoxon": "two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon)"}
ALPHA = 0.05
WILCOXON_MIN_N = 6  # the fewest pairs with which the two-sided Wilcoxon signed-rank test can reach p < 0.05
FRIEDMAN_EXACT_MAX_WORK = 3_000_000  # states x arrangements of the exact Friedman recursion before Monte-Carlo takes over
FRIEDMAN_RESAMPLES = 100_000  # Monte-Carlo permutations when the exact distribution is too large


@dataclass(frozen=True)
class Paired:
    """Result of one paired comparison a − b."""

    n: int
    delta: float  # mean of a − b over the pairs
    p: float  # NaN when the test cannot be made (n < 2)
    unit: str = "case"  # what a pair is: "case" (a test case of one split) or "split" (a split's mean / set-level value)

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

        # statsmodels' Holm ends in gc.collect(): 0.17 s a family in a driver holding torch and Ray (13 s of a
        # 26 s report); frozen, the collection scans only the objects made since.
        owner = gc.get_freeze_count() == 0  # a caller's own freeze stays as it was
        if owner:
            gc.freeze()
        try:
            out[finite] = multipletests(p[finite], method="holm")[1]
        finally:
            if owner:
                gc.unfreeze()
    return list(out)


def wilcoxon_smallest_p(n: int) -> float:
    """The smallest two-sided p-value of the exact Wilcoxon signed-rank test with ``n`` pairs (no ties, no zeros):
    all differences of one sign, P = 2 · (1/2)^n. Below n = 6 it is at least 0.0625, so no difference can be
    significant at 0.05 (``WILCOXON_MIN_N``)."""
    return min(1.0, 2.0 * 0.5 ** n)


def rank_problems(scores: pd.DataFrame, higher_is_better: dict) -> pd.DataFrame:
    """scores: index problems (task, fraction), columns methods, NaN = not run -> ranks (1 = best, ties averaged)
    among the methods present in each problem. ``higher_is_better``: problem -> bool."""
    ranks = scores.copy() * np.nan
    for problem, row in scores.iterrows():
        present = row.dropna()
        if len(present):
            ranks.loc[problem, present.index] = present.rank(ascending=not higher_is_better[problem], method="average")
    return ranks


def _doubled_ranks(blocks: np.ndarray) -> np.ndarray:
    """Within-block mid-ranks times two (integers, ties included): N x k."""
    from scipy.stats import rankdata

    return np.rint(2 * rankdata(np.asarray(blocks, dtype=float), axis=1)).astype(np.int64)


def friedman_null(doubled: np.ndarray, *, max_work: int = FRIEDMAN_EXACT_MAX_WORK) -> tuple[np.ndarray, np.ndarray] | None:
    """The exact null distribution of S = Σ_j (2 R_j)² for blocks of doubled within-block ranks (N x k integers):
    (the values of S, their probabilities), or None when it would take more than ``max_work`` (states x arrangements).

    Under H0 every distinct arrangement of a block's ranks over the k methods is equally likely, independently per
    block (Friedman 1937). The recursion runs over the blocks on the vector of rank sums, kept sorted (the null
    distribution is symmetric in the methods, so only the sorted vector matters), each block adding every distinct
    arrangement of its own ranks with equal probability (ties: its mid-ranks are permuted, the conditional test)."""
    n, k = doubled.shape
    radix = 2 * n * k + 1  # a doubled rank sum is at most 2Nk
    powers = radix ** np.arange(k, dtype=np.int64)
    states, weights = np.zeros((1, k), dtype=np.int64), np.ones(1)
    for row in doubled:
        if len(states) * math.factorial(k) > max_work:
            return None
        perms = np.unique(np.array(list(itertools.permutations(row)), dtype=np.int64), axis=0)  # distinct arrangements
        grown = np.sort((states[:, None, :] + perms[None, :, :]).reshape(-1, k), axis=1)
        if radix ** k < 2 ** 62:  # one integer per state: np.unique on a flat array is far faster than on rows
            codes, inverse = np.unique(grown @ powers, return_inverse=True)
            states = (codes[:, None] // powers) % radix
        else:
            states, inverse = np.unique(grown, axis=0, return_inverse=True)
        weights = np.bincount(inverse.ravel(), weights=np.repeat(weights / len(perms), len(perms)), minlength=len(states))
    values, inverse = np.unique((states ** 2).sum(axis=1), return_inverse=True)
    return values, np.bincount(inverse.ravel(), weights=weights, minlength=len(values))


def friedman_permutation_p(blocks, *, max_work: int = FRIEDMAN_EXACT_MAX_WORK, n_resamples: int = FRIEDMAN_RESAMPLES,
                           seed: int = 0) -> tuple[float, str]:
    """p-value of Friedman's test from its permutation distribution: (p, how) with how "exact" or
    "Monte-Carlo (R permutations, seed S)".

    blocks: N x k (problems x methods), higher = better. The statistic is S = Σ_j R_j² (R_j: method j's rank sum),
    which orders samples exactly as χ²_r does, tie correction included (the correction is a constant of the blocks'
    tie patterns, which permutations keep). scipy has no exact Friedman test (``friedmanchisquare`` uses the χ²
    approximation, poor at small N), so the exact distribution comes from :func:`friedman_null`; when that would
    exceed ``max_work`` (about k > 7, or large N x k) a Monte-Carlo estimate with a fixed seed,
    (1 + #{S* >= S}) / (1 + R), labelled as such. (tests/test_report_stats.py checks it against
    ``scipy.stats.permutation_test`` and the published critical values of the Friedman statistic.)
    """
    doubled = _doubled_ranks(blocks)  # N x k, integers
    n, k = doubled.shape
    observed = int((doubled.sum(axis=0) ** 2).sum())
    null = friedman_null(doubled, max_work=max_work)
    if null is not None:
        values, probabilities = null
        return min(1.0, float(probabilities[values >= observed].sum())), "exact"
    rng = np.random.default_rng(seed)
    exceed, done = 0, 0
    while done < n_resamples:  # chunks: R x N x k keys at most ~ 4e6
        chunk = min(n_resamples - done, max(1, 4_000_000 // (n * k)))
        order = rng.random((chunk, n, k)).argsort(axis=2)
        sums = np.take_along_axis(np.broadcast_to(doubled, (chunk, n, k)), order, axis=2).sum(axis=1)
        exceed += int(((sums ** 2).sum(axis=1) >= observed).sum())
        done += chunk
    return (1 + exceed) / (1 + n_resamples), f"Monte-Carlo ({n_resamples:,} permutations, seed {seed})"


def nemenyi_cd(k: int, n: int, *, alpha: float = ALPHA) -> float:
    """Critical difference of mean ranks of the Nemenyi test (Demšar 2006, section 3.2.2):
    q_α √(k(k+1) / (6N)), q_α the studentized range quantile of k groups with infinite degrees of freedom over √2
    (Demšar's Table 5a: 2.343 at k = 3, 2.569 at k = 4, ... at α = 0.05)."""
    from scipy.stats import studentized_range

    q = float(studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6.0 * n))


@dataclass
class Friedman:
    methods: list[str]  # methods present in every problem (the complete block design tested)
    problems: int
    statistic: float  # χ²_r with scipy's tie correction
    p: float  # from the permutation distribution (``p_method``)
    mean_ranks: pd.Series  # over the complete block, 1 = best
    nemenyi: pd.DataFrame | None  # pairwise p-values
    p_chi2: float = float("nan")  # the χ² approximation (k − 1 degrees of freedom), for reference
    p_method: str = "exact"  # "exact" or "Monte-Carlo (...)"
    cd: float = float("nan")  # Nemenyi critical difference of mean ranks at ALPHA


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
        stat, p_chi2 = friedmanchisquare(*[oriented[c].to_numpy() for c in oriented.columns])
        nemenyi = sp.posthoc_nemenyi_friedman(oriented.reset_index(drop=True))
    p, how = friedman_permutation_p(oriented.to_numpy(dtype=float))
    ranks = oriented.rank(axis=1, ascending=False).mean()
    return Friedman(methods=list(complete.columns), problems=int(complete.shape[0]), statistic=float(stat), p=float(p),
                    mean_ranks=ranks, nemenyi=nemenyi, p_chi2=float(p_chi2), p_method=how,
                    cd=nemenyi_cd(complete.shape[1], complete.shape[0]))


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
