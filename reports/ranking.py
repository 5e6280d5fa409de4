"""Cross-task ranking of the configurations on each task's main metric, one ranking per backbone, as challenge
rankings do: rank per (task, fraction) among the configurations of that backbone that have a value there, mean rank
over those problems; Friedman test (exact permutation p at small N) + Nemenyi post-hoc with its critical difference
over the configurations present in every problem; ranking stability by bootstrap over the test cases.

Why per backbone: scratch rows and pretrained rows of different architectures in one ranking mostly rank the
architectures (a ranking of the default run across backbones said unet2d beats swin_unetr, not which pretraining
helps), and a problem where a backbone has fewer competitors would weigh differently. Within one backbone every
configuration shares the architecture and its scratch baseline, so the ranks compare the pretraining."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.stats import Friedman, bootstrap_ranks, friedman_nemenyi, rank_problems
from reports.tables import Table


@dataclass
class Ranking:
    backbone: str
    scores: pd.DataFrame  # problems ("task fraction") x configurations: the cell means
    ranks: pd.DataFrame  # same shape, 1 = best
    summary: pd.DataFrame  # per configuration: mean rank, problems, overall rank, bootstrap share keeping it
    friedman: Friedman | None
    stability: pd.DataFrame | None  # configurations x ranks: share of bootstrap draws
    n_boot: int


def rank(tables: list[Table], *, n_boot: int = 500, seed: int = 0) -> list[Ranking]:
    """One ranking per backbone over the main-metric tables (backbones in table order); a backbone without a
    problem holding two scored configurations has none."""
    primary = [t for t in tables if t.primary]
    backbones = dict.fromkeys(r.backbone for t in primary for r in t.rows)
    out = [_rank_backbone(primary, backbone, n_boot=n_boot, seed=seed) for backbone in backbones]
    return [r for r in out if r is not None]


def _rank_backbone(primary: list[Table], backbone: str, *, n_boot: int, seed: int) -> Ranking | None:
    scores, direction, problems = {}, {}, {}
    for table in primary:
        for fraction in table.fractions:
            problem = f"{table.task} {fraction}"
            column = {}
            splits: dict = {}
            for row in table.rows:
                cell = table.cells[(row.label, fraction)]
                if row.backbone != backbone or cell.status != "ok":
                    continue
                column[row.label] = cell.mean
                for (seed_, fold), group in cell.values.groupby(["seed", "fold"]):
                    index = group["case_id"] if "case_id" in group else pd.Series(["set"] * len(group), index=group.index)
                    splits.setdefault((seed_, fold), {})[row.label] = pd.Series(group["value"].to_numpy(), index=index.to_numpy())
            if len(column) < 2:
                continue
            scores[problem] = column
            direction[problem] = table.higher_is_better
            problems[problem] = [pd.DataFrame(per_method).T for per_method in splits.values()]
    if not scores:
        return None
    scores = pd.DataFrame.from_dict(scores, orient="index")
    ranks = rank_problems(scores, direction)
    summary = pd.DataFrame({"mean_rank": ranks.mean(axis=0), "problems": ranks.notna().sum(axis=0)})
    summary["rank"] = summary["mean_rank"].rank(method="min").astype(int)
    summary = summary.sort_values(["rank", "mean_rank"])
    stability = None
    if n_boot > 0:
        stability = bootstrap_ranks(problems, direction, list(summary.index), n_boot=n_boot, seed=seed)
        summary["kept_rank"] = [stability.loc[m, r] for m, r in zip(summary.index, summary["rank"])]
    summary.index.name = "configuration"
    return Ranking(backbone=backbone, scores=scores, ranks=ranks, summary=summary, friedman=friedman_nemenyi(scores, direction),
                   stability=stability, n_boot=n_boot)
