"""``build_report``: run folders in, report files out (Markdown, CSV, LaTeX, a static HTML site, plots).

Pure: reads the tidy tables only (nothing retrains), imports neither torch nor Ray."""
from __future__ import annotations

import html
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from reports import plots as figures
from reports.load import Runs, load_runs
from reports.published import PAPERS, SCALE_NOTES, TASKS as PAPER_TASKS, in_house_name, matches, paper_results
from reports.ranking import Ranking, rank
from reports.render import (RANKING_INTRO, delta_table_md, figure, friedman_text, html_frame, html_table, latex, markdown, page,
                            published_rows, ranking_frame, ranking_note, reproducibility_html, write_atomic)
from reports.stats import TESTS
from reports.tables import Table, build_tables

INTRO = ("Every number is computed from the runs' tidy results tables (results.csv, cells.csv): per split (seed × fold) the "
         "mean over the test cases (or the test set's value for set-level metrics such as AUC), then mean (std) over splits. "
         "Columns are label fractions of the training cases (n = labelled cases); rows are grouped by backbone and fine-tuning "
         "setting, each group headed by its scratch (random initialisation) baseline. “—”: no value (not run yet, or no "
         "finite value); n/a: the method cannot run on the task (reason at the end).")


def na_reasons(cells: pd.DataFrame) -> list[str]:
    if not len(cells):
        return []
    bad = cells[cells["status"].isin(["n/a", "failed"])].drop_duplicates(["method", "backbone", "task", "status", "reason"])
    return [f"{r.method} ({r.backbone}) on {r.task}: {r.status} – {r.reason}" for r in bad.itertuples()]


def _synthetic(runs: Runs, task: str) -> bool:
    roots = [str((c.get("data_roots") or {}).get(task, "")) for c in runs.run_configs.values()]
    roots = [r for r in roots if r]
    return bool(roots) and all("synthetic" in r for r in roots)


def attach_published(tables: list[Table], runs: Runs, *, paper_datasets: dict[str, str] | None = None) -> None:
    """The papers' numbers beside our cells (``reports.published.matches``); ``paper_datasets``: task -> the paper's
    in-house cohort the user says the task's data is (``--paper-dataset``)."""
    reference = paper_results()
    for table in tables:
        synthetic = _synthetic(runs, table.task)
        for row in table.rows:
            for fraction in table.fractions:
                cell = table.cells[(row.label, fraction)]
                cell.published = matches(task=table.task, metric=table.metric, row=row, fraction=fraction,
                                         n_labeled=str(table.n_labeled.get(fraction)), profiles=cell.repro.get("profiles", []),
                                         synthetic=synthetic, table=reference, config=cell.repro.get("config"),
                                         paper_datasets=paper_datasets)


def unmatched_published(tables: list[Table]) -> pd.DataFrame:
    """The papers' rows for our tasks that no row of ours matched (methods or settings not run here)."""
    reference = paper_results()
    tasks = {t.task for t in tables}
    used = {(p.paper, p.table, p.value, p.setting) for t in tables for c in t.cells.values() for p in c.published}
    keep = reference[reference["task"].map(PAPER_TASKS).isin(tasks)]
    keep = keep.loc[np.array([(r.paper, str(r.table), float(r.value), str(r.label_setting)) not in used for r in keep.itertuples()], dtype=bool)]
    notes = []
    for r in keep.itertuples():
        note = "" if pd.isna(r.note) else str(r.note)
        cohort = in_house_name(str(r.dataset))
        if cohort:  # why it is not beside ours, and how to attach it
            note = (f"{note}; " if note else "") + (f"in-house cohort: shown beside {PAPER_TASKS.get(r.task)} only with "
                                                     f"--paper-dataset {PAPER_TASKS.get(r.task)}={cohort}")
        scale = SCALE_NOTES.get((str(r.paper), str(r.metric).lower()))
        notes.append(f"{note}; {scale}" if scale and note else (scale or note))
    return pd.DataFrame({"task": keep["task"].map(PAPER_TASKS), "method (paper's name)": keep["method"], "metric": keep["metric"],
                         "published": keep["value"].map(lambda v: f"{v:g}"),
                         "source": [f"{PAPERS.get(p, (p,))[0]}, Table {t}" for p, t in zip(keep["paper"], keep["table"])],
                         "setting": keep["dataset"] + ", " + keep["label_setting"], "paper note": notes})


def _plots(tables: list[Table], rankings: list[Ranking], runs: Runs, folder: Path) -> dict:
    if folder.exists():
        for old in list(folder.glob("*.png")) + list(folder.glob("*.svg")):
            old.unlink()
    out: dict = {}
    for table in tables:
        if not table.primary:
            continue
        made = {"label-efficiency": figures.label_efficiency(table, folder), "per-case": figures.per_case(table, folder),
                "validation": figures.validation_curves(runs.curves, table, folder)}
        out[table.task] = {k: v for k, v in made.items() if v}
    for ranking in rankings:  # "_ranking" -> backbone -> kind -> paths
        made = {}
        if ranking.friedman is not None:
            made["critical-difference"] = figures.critical_difference(ranking.friedman.mean_ranks, ranking.friedman.nemenyi, folder,
                                                                      name=ranking.backbone, cd=ranking.friedman.cd)
        if ranking.stability is not None:
            made["rank-stability"] = figures.rank_stability(ranking.stability, folder, ranking.n_boot, name=ranking.backbone)
        if made:
            out.setdefault("_ranking", {})[ranking.backbone] = made
    return out


CAPTIONS = {"label-efficiency": "Label efficiency: main metric vs labelled cases, mean ± std over splits",
            "per-case": "Per-case values (box: quartiles; dots: test cases of every split)",
            "validation": "Validation curves (mean over cells)",
            "critical-difference": "Critical-difference diagram (mean rank; bars join configurations not significantly different)",
            "rank-stability": "Ranking stability under bootstrap resampling of the test cases"}


PUB_NOTE = (" “published”: the paper's own number (paper, table) for this method, metric and label setting; † our protocol "
            "differs (data, recipe, backbone or labelled cases: see the table of published numbers below).")


def task_page_name(task: str) -> str:
    return f"task-{figures.slug(task)}.html"


def _task_body(task: str, tables: list[Table], plots: dict, out_dir: Path, *, level: int = 1) -> list[str]:
    h, h2 = f"h{level}", f"h{level + 1}"
    task_tables = [t for t in tables if t.task == task]
    body = [f"<{h} id='{html.escape(figures.slug(task))}'>{html.escape(task)}</{h}>"]
    for table in task_tables:
        body += [f"<{h2}>{html.escape(table.metric)}{' (main metric)' if table.primary else ''}</{h2}>", html_table(table),
                 f"<p class='note'>{html.escape(table.note().replace('`', ''))}{PUB_NOTE if any(c.published for c in table.cells.values()) else ''}</p>"]
        if table.primary:
            delta = delta_table_md(table)
            if delta:
                frame = _md_to_frame(delta)
                body += [f"<p class='note'>Paired difference to the scratch baseline ({html.escape(TESTS[table.test])}):</p>", html_frame(frame)]
            for kind, paths in plots.get(task, {}).items():
                body.append(figure(paths, f"{task}: {CAPTIONS[kind]}", base=out_dir))
    pubs = published_rows(task_tables)
    unmatched = unmatched_published(task_tables)
    if pubs or len(unmatched):
        body.append(f"<{h2}>Published numbers beside ours</{h2}><p class='note'>Published values are the papers' own numbers "
                    "(their data, recipe and backbone), not reproduced here; the last column says where our protocol differs.</p>")
        if pubs:
            body.append(html_frame(pd.DataFrame(pubs).drop(columns=["task"]), cls="wrap"))
        if len(unmatched):
            body += ["<p class='note'>Published for this task, no matching row in this report (method, ablation or setting not run):</p>",
                     html_frame(unmatched.drop(columns=["task"]), cls="wrap")]
    primary = [t for t in task_tables if t.primary]
    if primary:
        body += [f"<{h2}>Reproducibility</{h2}>", "<p class='note'>Per configuration and fraction: the cells behind the number, "
                 "resolved configuration, search budget and chosen hyperparameters (when tuned), pretraining checkpoint hash, "
                 "wall time (pretraining share + fine-tuning), device-hours and software versions.</p>", reproducibility_html(primary[0])]
    return body


def _md_to_frame(md: str) -> pd.DataFrame:
    lines = [l.strip().strip("|").split(" | ") for l in md.splitlines() if l.startswith("| ")]
    return pd.DataFrame(lines[1:], columns=[c.strip() for c in lines[0]])


def _ranking_body(rankings: list[Ranking], plots: dict, out_dir: Path) -> list[str]:
    if not rankings:
        return ["<h2>Ranking across tasks</h2><p class='note'>No task × fraction with two or more scored configurations of one "
                "backbone yet.</p>"]
    body = ["<h2>Ranking across tasks</h2>", f"<p class='note'>{html.escape(RANKING_INTRO)}</p>"]
    for ranking in rankings:
        body += [f"<h3>Backbone {html.escape(ranking.backbone)}</h3>", html_frame(ranking_frame(ranking), cls="ranking"),
                 f"<p class='note'>{html.escape(ranking_note(ranking))}</p>"]
        if ranking.friedman is not None:
            body.append(f"<p class='note'>{html.escape(friedman_text(ranking))}</p>")
        else:
            body.append("<p class='note'>Friedman test: needs at least 3 configurations of this backbone present in at least 2 "
                        "task × fraction problems.</p>")
        for kind, paths in plots.get("_ranking", {}).get(ranking.backbone, {}).items():
            body.append(figure(paths, f"{ranking.backbone}: {CAPTIONS[kind]}", base=out_dir))
    return body


def build_report(run_dirs: list[Path], *, out_dir: Path, publish_dir: Path | None = None, title: str,
                 test: str = "ttest", holm: bool = True, n_boot: int = 500, paper_datasets: dict[str, str] | None = None) -> dict[str, Path]:
    """Write leaderboard.md / .csv / .tex, the HTML site (index.html, one page per task, leaderboard.html with
    everything on one page, plots/) into ``out_dir``; copy the site to ``publish_dir`` when given.

    ``holm``: Holm-correct each table's p-values (default; ``--no-holm`` switches it off). ``paper_datasets``: task ->
    the paper's dataset that the user says the task's data is (``--paper-dataset mri_cls=Breast2023``): only then
    are a paper's rows on an in-house cohort shown beside that task (``reports.published.IN_HOUSE``)."""
    if test not in TESTS:
        raise ValueError(f"--stat-test {test!r}: expected one of {sorted(TESTS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load_runs([Path(d) for d in run_dirs])
    tables = build_tables(runs, test=test, holm=holm)
    attach_published(tables, runs, paper_datasets=paper_datasets or {})
    rankings = rank(tables, n_boot=n_boot)
    plots = _plots(tables, rankings, runs, out_dir / "plots")
    notes = na_reasons(runs.cells)
    tasks = list(dict.fromkeys(t.task for t in tables))
    sources = ", ".join(Path(d).resolve().name for d in run_dirs)  # names, not paths: the site may be published
    intro = INTRO + f" Runs: {sources}."

    paths = {"markdown": out_dir / "leaderboard.md", "csv": out_dir / "leaderboard.csv", "tex": out_dir / "leaderboard.tex",
             "html": out_dir / "index.html", "leaderboard_html": out_dir / "leaderboard.html"}
    def relative(kinds: dict) -> dict:
        return {k: {"png": os.path.relpath(v["png"], out_dir)} for k, v in kinds.items()}

    md_plots = {task: relative(kinds) for task, kinds in plots.items() if task != "_ranking"}
    md_plots["_ranking"] = {backbone: relative(kinds) for backbone, kinds in plots.get("_ranking", {}).items()}
    write_atomic(paths["markdown"], markdown(tables, rankings, title=title, intro=intro, notes=notes, plots=md_plots))
    write_atomic(paths["csv"], render_csv(tables))
    write_atomic(paths["tex"], latex(tables, title=title))

    nav = [("Overview", "index.html")] + [(t, task_page_name(t)) for t in tasks] + [("All on one page", "leaderboard.html")]
    downloads = ("<p class='note'>Downloads: <a href='leaderboard.md'>Markdown</a> · <a href='leaderboard.csv'>CSV (one row per "
                 "table cell, with statistics, published values and reproducibility)</a> · <a href='leaderboard.tex'>LaTeX (booktabs)</a></p>")
    index = [f"<h1>{html.escape(title)}</h1>", f"<p class='note'>{html.escape(intro)}</p>", downloads]
    index += _ranking_body(rankings, plots, out_dir)
    index.append("<h2>Tasks</h2>")
    for task in tasks:
        primary = [t for t in tables if t.task == task and t.primary]
        index.append(f"<h3><a href='{task_page_name(task)}'>{html.escape(task)}</a></h3>")
        if primary:
            pub = PUB_NOTE if any(c.published for c in primary[0].cells.values()) else ""
            index += [html_table(primary[0]), f"<p class='note'>{html.escape(primary[0].note().replace('`', ''))}{html.escape(pub)} Every metric, plots, published "
                      f"numbers and reproducibility: <a href='{task_page_name(task)}'>{html.escape(task)} page</a>.</p>"]
    if notes:
        index += ["<h2>Not run</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    write_atomic(paths["html"], page(title, index, nav=nav))
    everything = [f"<h1>{html.escape(title)}</h1>", f"<p class='note'>{html.escape(intro)}</p>", downloads] + _ranking_body(rankings, plots, out_dir)
    for task in tasks:
        write_atomic(out_dir / task_page_name(task), page(f"{title} – {task}", _task_body(task, tables, plots, out_dir), nav=nav))
        everything += _task_body(task, tables, plots, out_dir, level=2)
    if notes:
        everything += ["<h2>Not run</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    write_atomic(paths["leaderboard_html"], page(title, everything, nav=nav))
    site = [paths["html"], paths["leaderboard_html"], paths["markdown"], paths["csv"], paths["tex"]] + [out_dir / task_page_name(t) for t in tasks]
    if publish_dir is not None:
        publish_dir = Path(publish_dir)
        publish_dir.mkdir(parents=True, exist_ok=True)
        for path in site:
            shutil.copy2(path, publish_dir / path.name)
        if (out_dir / "plots").exists():
            shutil.copytree(out_dir / "plots", publish_dir / "plots", dirs_exist_ok=True)
        paths["published_site"] = publish_dir / "index.html"
    paths["site"] = out_dir
    return paths


def render_csv(tables: list[Table]) -> str:
    from reports.render import csv_rows

    return csv_rows(tables).to_csv(index=False)
