"""Renderings of the leaderboard model: Markdown, CSV (one row per table cell), LaTeX (booktabs) and
the static HTML site (index with the cross-task ranking, one page per task, no external assets)."""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.records import write_atomic  # noqa: F401  (the one atomic writer; reports.build writes through it)
from reports.ranking import Ranking
from reports.stats import ALPHA
from reports.tables import MISSING, Table, json_text

MARK = {"better": "▲", "worse": "▼", "": ""}


def _p(p: float) -> str:
    return "—" if p is None or not np.isfinite(p) else f"{p:.2g}"


def delta_text(cell) -> str:
    """"Δ +0.300 (p=0.031, n=6)" of a cell vs its scratch baseline ("" without a baseline)."""
    paired = cell.vs_scratch
    if paired is None or paired.n == 0:
        return ""
    text = f"Δ {paired.delta:+.3f}"
    if paired.testable:
        text += f" (p={_p(cell.p_scratch)}, n={paired.n})"
    else:
        text += f" (n={paired.n})"
    return text


def _heading(table: Table) -> str:
    return f"{table.task} — {table.metric}" + (" (main metric)" if table.primary else "")


def _groups(table: Table):
    """Rows split where the backbone / fine-tuning setting changes (a rule in Markdown-less renderings)."""
    previous = None
    for row in table.rows:
        yield row, previous is not None and row.setting != previous
        previous = row.setting


# ---- Markdown -----------------------------------------------------------------------------------------------
def _md_cell(cell) -> str:
    text = cell.text
    if cell.bold and cell.status == "ok":
        text = f"**{text}**"
    return text + (f" {MARK[cell.marker]}" if cell.marker else "")


def columns(table: Table) -> list[tuple[str, bool]]:
    """(fraction, is the "undefined" count column) in display order: each fraction's values, followed by its count of
    undefined values when some cell of the table has any (a distance with an empty prediction or reference)."""
    return [(f, u) for f in table.fractions for u in ((False, True) if table.has_undefined else (False,))]


def column_header(table: Table, fraction: str, undefined: bool) -> str:
    return f"{fraction}: undefined" if undefined else table.column_label(fraction)


def markdown_table(table: Table) -> str:
    header = ["method (backbone)"] + [column_header(table, f, u) for f, u in columns(table)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = [(table.cells[(row.label, f)].undefined_text if u else _md_cell(table.cells[(row.label, f)])) for f, u in columns(table)]
        lines.append("| " + " | ".join([row.label] + cells) + " |")
    return "\n".join(lines)


def delta_table_md(table: Table) -> str:
    rows = [r for r in table.rows if not r.is_scratch and any(table.cells[(r.label, f)].vs_scratch for f in table.fractions)]
    if not rows:
        return ""
    header = [f"method (backbone) vs {table.baseline}"] + [table.column_label(f) for f in table.fractions]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([row.label] + [delta_text(table.cells[(row.label, f)]) or MISSING for f in table.fractions]) + " |")
    return "\n".join(lines)


def published_rows(tables: list[Table]) -> list[dict]:
    out = []
    for table in tables:
        for row in table.rows:
            for fraction in table.fractions:
                cell = table.cells[(row.label, fraction)]
                for pub in cell.published:
                    out.append({"task": table.task, "metric": table.metric, "configuration": row.label, "fraction": table.column_label(fraction),
                                "ours": cell.text, "published": pub.text, "source": pub.source, "setting": f"{pub.dataset}, {pub.setting}",
                                "paper note": pub.note, "protocol differences": pub.protocol})
    return out


def markdown(tables: list[Table], rankings: list[Ranking], *, title: str, intro: str, notes: list[str], plots: dict) -> str:
    md = [f"# {title}", "", intro, ""]
    if rankings:
        md += ["## Ranking across tasks", "", RANKING_INTRO, ""]
        for ranking in rankings:
            md += [f"### Backbone {ranking.backbone}", "", ranking_note(ranking), "", _md_frame(ranking_frame(ranking)), ""]
            if ranking.friedman is not None:
                md += [friedman_text(ranking), ""]
            for kind, paths in plots.get("_ranking", {}).get(ranking.backbone, {}).items():
                md += [f"![{ranking.backbone} {kind}]({paths['png']})", ""]
    for task in dict.fromkeys(t.task for t in tables):
        task_tables = [t for t in tables if t.task == task]
        md += [f"## {task}", ""]
        for table in task_tables:
            md += [f"### {_heading(table)}", "", markdown_table(table), "", table.note(), ""]
            if table.primary:
                delta = delta_table_md(table)
                if delta:
                    md += [delta, ""]
        pubs = published_rows(task_tables)
        if pubs:
            md += [f"### {task}: published numbers beside ours", "", "Published values are the papers' own (their data, recipe and "
                   "backbone); the last column says where our protocol differs.", "", _md_frame(pd.DataFrame(pubs).drop(columns=["task"])), ""]
        for kind, paths in plots.get(task, {}).items():
            md += [f"![{task} {kind}]({paths['png']})", ""]
    if notes:
        md += ["## Not run", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(md)


def _md_frame(frame: pd.DataFrame) -> str:
    header = list(frame.columns)
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in row) + " |")
    return "\n".join(lines)


# ---- ranking ------------------------------------------------------------------------------------------------
def ranking_frame(ranking: Ranking) -> pd.DataFrame:
    s = ranking.summary
    frame = pd.DataFrame({"rank": s["rank"], "configuration": s.index, "mean rank": s["mean_rank"].map(lambda v: f"{v:.2f}"),
                          "problems": s["problems"]})
    if "kept_rank" in s:
        frame["bootstrap: keeps its rank"] = s["kept_rank"].map(lambda v: f"{100 * v:.0f}%")
    return frame.reset_index(drop=True)


RANKING_INTRO = ("One ranking per backbone: configurations are ranked only against configurations of the same backbone, so "
                 "the ranks compare the pretraining (with its scratch baseline), not the architectures.")


def ranking_note(ranking: Ranking) -> str:
    problems = ", ".join(ranking.scores.index)
    text = (f"Each task's main metric; the {ranking.backbone} configurations ranked within each task × label fraction (1 = best, "
            f"ties averaged; problems: {problems}), then the mean rank over the problems where a configuration has a value.")
    if ranking.stability is not None:
        text += (f" Stability: {ranking.n_boot} bootstrap resamples of the test cases of every split (the same cases for every "
                 "configuration; set-level metrics such as AUC are not resampled); the last column is the share of resamples in "
                 "which a configuration keeps its overall rank.")
    return text


def friedman_text(ranking: Ranking) -> str:
    f = ranking.friedman
    how = ("from the exact permutation distribution" if f.p_method == "exact" else f"a {f.p_method} estimate of the permutation p")
    return (f"Friedman test over the {len(f.methods)} configurations present in all {f.problems} problems: "
            f"χ² = {f.statistic:.2f}, p = {_p(f.p)} ({how}; the χ² approximation, poor with few problems, gives {_p(f.p_chi2)}). "
            f"Nemenyi critical difference CD = {f.cd:.2f} mean ranks at α = {ALPHA} (q_α·√(k(k+1)/6N), Demšar 2006): two "
            f"configurations whose mean ranks differ by less are not significantly different; the diagram (scikit-posthocs, "
            f"Nemenyi p-values) joins them by a bar.")


# ---- CSV ----------------------------------------------------------------------------------------------------
def csv_rows(tables: list[Table]) -> pd.DataFrame:
    rows = []
    for table in tables:
        for row in table.rows:
            for fraction in table.fractions:
                cell = table.cells[(row.label, fraction)]
                repro = cell.repro
                pubs = cell.published
                rows.append({
                    "task": table.task, "metric": table.metric, "primary": table.primary, "higher_is_better": table.higher_is_better,
                    "scope": table.scope, "configuration": row.label, "method": row.method, "backbone": row.backbone,
                    "finetune_aug": row.finetune_aug, "missing_series": row.missing_series, "label_aware": row.label_aware,
                    "overrides": json_text(row.overrides) if row.overrides else "", "fraction": fraction,
                    "n_labeled": table.n_labeled.get(fraction), "status": cell.status, "text": cell.text,
                    "mean": cell.mean, "std": cell.std, "n_splits": cell.n_splits, "n_values": cell.n_values, "reason": cell.reason,
                    "n_cases": cell.n_cases, "n_undefined": cell.n_undefined,
                    "n_empty_pred": np.nan if cell.n_empty_pred is None else cell.n_empty_pred,
                    "bold": cell.bold, "marker": cell.marker, "test": table.test, "holm": table.holm,
                    "baseline": cell.baseline, "delta_vs_scratch": cell.vs_scratch.delta if cell.vs_scratch else np.nan,
                    "unit_vs_scratch": cell.vs_scratch.unit if cell.vs_scratch else "",
                    "n_pairs_vs_scratch": cell.vs_scratch.n if cell.vs_scratch else np.nan,
                    "p_vs_scratch_raw": cell.vs_scratch.p if cell.vs_scratch else np.nan, "p_vs_scratch": cell.p_scratch,
                    "n_pairs_vs_best": cell.vs_best.n if cell.vs_best else np.nan,
                    "p_vs_best_raw": cell.vs_best.p if cell.vs_best else np.nan, "p_vs_best": cell.p_best,
                    "published_value": ";".join(f"{p.value:g}" for p in pubs), "published_std": ";".join("" if np.isnan(p.std) else f"{p.std:g}" for p in pubs),
                    "published_source": ";".join(p.source for p in pubs), "published_setting": ";".join(f"{p.dataset}, {p.setting}" for p in pubs),
                    "published_note": ";".join(p.protocol for p in pubs),
                    "runs": ";".join(repro.get("runs", [])), "profiles": ";".join(repro.get("profiles", [])),
                    "cell_ids": ";".join(repro.get("cell_ids", [])), "config_ids": ";".join(repro.get("config_ids", [])),
                    "method_config": json_text(repro["method_config"]) if repro.get("method_config") else "",
                    "search_budget": repro.get("search_budget"), "tuned_params": json_text(repro["tuned_params"]) if repro.get("tuned_params") else "",
                    "pretrain_hashes": ";".join(repro.get("pretrain_hashes", [])), "wall_seconds": repro.get("wall_seconds"),
                    "device_hours": repro.get("device_hours"),
                    "versions": ";".join(json_text(v) if isinstance(v, dict) else str(v) for v in repro.get("versions", [])),
                })
    return pd.DataFrame(rows)


# ---- LaTeX --------------------------------------------------------------------------------------------------
def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"),
                 ("{", r"\{"), ("}", r"\}"), ("<", "$<$"), (">", "$>$"), ("`", ""), ("†", r"\dag{}"), ("±", r"$\pm$"), ("~", r"\textasciitilde{}"), ("^", r"\^{}"), ("—", "---"), ("–", "--"),
                 ("≥", r"$\geq$"), ("Δ", r"$\Delta$"), ("χ²", r"$\chi^2$"), ("α", r"$\alpha$"), ("×", r"$\times$")):
        text = text.replace(a, b)
    return text.replace("▲", r"$^{\blacktriangle}$").replace("▼", r"$^{\blacktriangledown}$")


def latex(tables: list[Table], *, title: str) -> str:
    out = [f"% {title}", "% generated by medssl-bench reports; needs \\usepackage{booktabs,amssymb}", ""]
    for table in tables:
        out += [r"\begin{table}[htbp]", r"\centering", r"\small",
                rf"\caption{{{_tex(_heading(table))}. {_tex(table.note())}}}",
                rf"\label{{tab:{table.task}-{table.metric}}}".replace("_", "-"),
                r"\begin{tabular}{l" + "r" * len(columns(table)) + "}", r"\toprule",
                " & ".join(["Method (backbone)"] + [_tex(column_header(table, f, u)) for f, u in columns(table)]) + r" \\", r"\midrule"]
        for row, new_group in _groups(table):
            if new_group:
                out.append(r"\midrule")
            cells = []
            for fraction, undefined in columns(table):
                cell = table.cells[(row.label, fraction)]
                if undefined:
                    cells.append(_tex(cell.undefined_text))
                    continue
                text = _tex(cell.text)
                if cell.bold and cell.status == "ok":
                    text = rf"\textbf{{{text}}}"
                cells.append(text + _tex(MARK[cell.marker]))
            out.append(" & ".join([_tex(row.label)] + cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


# ---- HTML ---------------------------------------------------------------------------------------------------
STYLE = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.45;margin:0 auto;padding:1em;max-width:72em;color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1.05em;margin-top:1.6em}
nav{display:flex;flex-wrap:wrap;gap:.4em 1em;margin:.5em 0 1em}nav a{white-space:nowrap}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:.5em 0}
table{border-collapse:collapse;font-size:.9em}
th,td{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:right;vertical-align:top;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
table.leaderboard td:first-child,table.leaderboard th:first-child{position:sticky;left:0;background:#fff}
tr.group td{border-top:2px solid #999}
td.best{font-weight:700}
td.na,td.missing{color:#888}td.failed{color:#b00}
.mark{font-size:.8em;margin-left:.2em}.better{color:#137333}.worse{color:#b3261e}
.pub{display:block;font-size:.78em;color:#555;font-weight:400}
.note{font-size:.85em;color:#444;max-width:60em}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85em;color:#444}
details{margin:.5em 0}summary{cursor:pointer}
pre{white-space:pre-wrap;word-break:break-word;font-size:.8em;background:#f6f6f6;padding:.5em}
.wrap td{white-space:normal;min-width:8em}
table.ranking td,table.ranking th{text-align:left}
"""


def page(title: str, body: list[str], *, nav: list[tuple[str, str]]) -> str:
    links = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in nav)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><link rel='icon' href='data:,'><style>{STYLE}</style></head><body>"
            f"<nav>{links}</nav>{''.join(body)}</body></html>")


def _html_cell(table: Table, cell) -> str:
    classes = {"ok": "", "n/a": "na", "failed": "failed", "missing": "missing"}[cell.status]
    if cell.bold and cell.status == "ok":
        classes += " best"
    tips = []
    if cell.status == "ok":
        tips.append(f"{cell.n_splits} split(s), {cell.n_values} value(s)")
    if cell.reason:
        tips.append(cell.reason)
    if cell.vs_scratch is not None:
        tips.append(f"vs {cell.baseline}: {delta_text(cell)}")
    if cell.vs_best is not None:
        tips.append(f"vs column best: p={_p(cell.p_best)}, n={cell.vs_best.n}")
    text = html.escape(cell.text)
    if cell.marker:
        text += f'<span class="mark {cell.marker}" aria-label="significantly {cell.marker} than scratch">{MARK[cell.marker]}</span>'
    for pub in cell.published:
        note = f" — protocol differs: {pub.protocol}" if pub.protocol else ""
        text += (f'<span class="pub" title="{html.escape(pub.source + ": " + pub.dataset + ", " + pub.setting + note)}">'
                 f"published {html.escape(pub.text)}, {html.escape(pub.short)}{'†' if pub.protocol else ''}</span>")
    return f'<td class="{classes.strip()}" title="{html.escape("; ".join(tips))}">{text}</td>'


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["method (backbone)"] + [column_header(table, f, u) for f, u in columns(table)])
    body = []
    for row, new_group in _groups(table):
        cells = "".join(f'<td class="undefined">{html.escape(table.cells[(row.label, f)].undefined_text)}</td>' if u
                        else _html_cell(table, table.cells[(row.label, f)]) for f, u in columns(table))
        body.append(f'<tr{" class=group" if new_group else ""}><td>{html.escape(row.label)}</td>{cells}</tr>')
    return (f'<div class="scroll"><table class="leaderboard" data-task="{html.escape(table.task)}" data-metric="{html.escape(table.metric)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def html_frame(frame: pd.DataFrame, *, cls: str = "") -> str:
    return f'<div class="scroll">{frame.to_html(index=False, border=0, classes=cls or None, escape=True, na_rep=MISSING)}</div>'


def figure(paths: dict, caption: str, *, base: Path) -> str:
    png = os.path.relpath(paths["png"], base)
    svg = os.path.relpath(paths["svg"], base)
    return (f'<figure><img src="{html.escape(png)}" alt="{html.escape(caption)}">'
            f'<figcaption>{html.escape(caption)} (<a href="{html.escape(svg)}">SVG</a>)</figcaption></figure>')


def _versions(values: list) -> str:
    out = []
    for v in values:
        if isinstance(v, dict):
            out.append(", ".join(f"{k} {val}" for k, val in sorted(v.items())))
        else:
            out.append(str(v))
    return "; ".join(out)


def reproducibility_html(table: Table) -> str:
    rows = []
    for row in table.rows:
        for fraction in table.fractions:
            r = table.cells[(row.label, fraction)].repro
            if not r:
                continue
            rows.append({
                "configuration": row.label, "fraction": table.column_label(fraction),
                "cells": ", ".join(f"{n} {s}" for s, n in r["statuses"].items()), "runs": ", ".join(r["runs"]) or MISSING,
                "profile": ", ".join(r["profiles"]) or MISSING, "config id": ", ".join(r["config_ids"]) or MISSING,
                "pretrain checkpoint": ", ".join(h[:12] for h in r["pretrain_hashes"]) or MISSING,
                "pretraining data": r.get("pretrain_data") or MISSING,
                "wall time": f"{r['wall_seconds'] / 60:.1f} min", "device-hours": f"{r['device_hours']:.4f}",
                "search budget": MISSING if r["search_budget"] is None else str(r["search_budget"]),
                "tuned": json_text(r["tuned_params"]) if r["tuned_params"] else "not tuned (defaults)",
                "software": _versions(r["versions"]) or MISSING,
                "config": r["config"],
            })
    if not rows:
        return ""
    frame = pd.DataFrame(rows)
    configs = frame.pop("config")
    details = []
    for (label, fraction), config in zip(zip(frame["configuration"], frame["fraction"]), configs):
        if config:
            details.append(f"<details><summary>resolved configuration: {html.escape(label)}, {html.escape(fraction)}</summary>"
                           f"<pre>{html.escape(json.dumps(config, indent=1, sort_keys=True, default=str))}</pre></details>")
    return html_frame(frame, cls="wrap") + "".join(details)
