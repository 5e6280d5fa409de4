"""Command line -> validated Plan -> Ray Train jobs -> results table -> leaderboard.

Every check that can be made before compute is made here, and a bad name, flag value or
data folder stops the run with one message and exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkInputError

DEFAULT_CACHE = Path(os.environ.get("MEDSSL_CACHE", Path.home() / ".cache" / "medssl-bench"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_benchmark.py",
        description="Pretrain SSL objectives, fine-tune them on medical segmentation tasks at several label fractions, and write a leaderboard.",
    )
    p.add_argument("--list", action="store_true", help="list methods, backbones, tasks and profiles, then exit")
    p.add_argument("--check-data", action="store_true",
                   help="validate every file of the chosen tasks (layout, modalities, shapes, affines, NaN, label values) and exit; no training")
    p.add_argument("--methods", default="csi,dae,csm",
                   help="comma-separated method names; METHOD:KEY=VALUE[:KEY=VALUE] adds a variant (an ablation), "
                        "e.g. dae,dae:cmcl=false (default: %(default)s)")
    p.add_argument("--tasks", default="brats,btcv", help="comma-separated task names (default: %(default)s)")
    p.add_argument("--fractions", default="100%,25%", help="label fractions: percentages ('25%%') or case counts ('5') (default: %(default)s)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; each is its own random patient-wise split, "
                                                "labelled subset and initialisation (default: %(default)s)")
    p.add_argument("--folds", type=int, default=1, help="k-fold cross-validation per seed (DAE/FeTA, LADP); 1: one hold-out "
                                                        "test split (default: %(default)s)")
    p.add_argument("--profile", help="smoke: minutes on a CPU; paper: each paper's recipe; tiny: 2 steps per stage (default: smoke without --data-root, paper with it)")
    p.add_argument("--data-root", action="append", default=[], metavar="[TASK=]PATH",
                   help="real dataset folder in the task's layout; TASK=PATH per task, a bare PATH for a single task; omitted -> built-in synthetic data")
    p.add_argument("--pretrain-extra", action="append", default=[], metavar="[TASK=]PATH",
                   help="extra unlabeled cases for pretraining only, PATH/<case>/<channel>.nii.gz per channel of the task "
                        "(default: pretrain on the task's training cases, the SI paper's protocol)")
    p.add_argument("--backbone", help="run every method on this backbone where it allows it (default: each method's paper backbone)")
    p.add_argument("--hparam", action="append", default=[], metavar="METHOD.KEY=VALUE", help="override a method hyperparameter, e.g. csi.pool_size=7")
    p.add_argument("--finetune-aug", choices=["none", "mixup", "carvemix"], default="none",
                   help="fine-tuning augmentation for every method: mixup (SI paper 6.4) or carvemix (default: %(default)s)")
    p.add_argument("--mixup-alpha", type=float, default=0.4, help="mixup Beta(alpha, alpha) parameter (default: %(default)s)")
    p.add_argument("--missing-series", type=float, default=0.0, metavar="SHARE",
                   help="share of fine-tuning and test cases with one or two series zeroed (CSM paper Table VII, "
                        "'Complete-series x'); the same cases for every method (default: %(default)s, complete data)")
    p.add_argument("--output", type=Path, help="output folder (default: ./results/<run-name>)")
    p.add_argument("--run-name", help="run name; reusing one resumes that run, skipping finished cells (default: a timestamp)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="pretrained checkpoints and synthetic data (default: %(default)s; env MEDSSL_CACHE)")
    p.add_argument("--address", help="Ray cluster to join, e.g. 'auto' (default: start an embedded local cluster)")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers per job (DDP) (default: %(default)s)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray Train worker (default: %(default)s)")
    p.add_argument("--cpus-per-worker", type=float, help="CPUs per Ray Train worker (default: half the cluster's CPUs per job)")
    p.add_argument("--concurrency", type=int, help="Ray Train jobs at once (default: as many as the resources fit)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard with the embedded cluster")
    return p


def _names(text: str, valid: list[str], kind: str, *, base=lambda name: name) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BenchmarkInputError(f"--{kind}s is empty; expected some of: {', '.join(valid)}")
    unknown = [n for n in names if base(n) not in valid]
    if unknown:
        raise BenchmarkInputError(f"unknown {kind} {', '.join(map(repr, unknown))}; expected one of: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BenchmarkInputError(f"--seeds {text!r}: expected comma-separated integers like '0,1,2'") from None
    if not seeds:
        raise BenchmarkInputError("--seeds is empty; expected e.g. '0'")
    return seeds


def _parse_data_roots(items: list[str], tasks: list[str], flag: str = "--data-root") -> dict[str, Path]:
    roots: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name in tasks:
            roots[name] = Path(path)
        elif sep and not os.path.exists(item):
            raise BenchmarkInputError(f"{flag} {item!r}: {name!r} is not one of the chosen tasks ({', '.join(tasks)})")
        elif len(tasks) == 1:
            roots[tasks[0]] = Path(item)
        else:
            raise BenchmarkInputError(f"{flag} {item!r}: with several tasks, write TASK=PATH (tasks: {', '.join(tasks)})")
    return roots


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_hparams(items: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, field = key.partition(".")
        if not (sep and dot and field):
            raise BenchmarkInputError(f"--hparam {item!r}: expected METHOD.KEY=VALUE, e.g. csi.pool_size=7")
        if method not in {m.split(":")[0] for m in methods}:
            raise BenchmarkInputError(f"--hparam {item!r}: method {method!r} is not among --methods ({', '.join(methods)})")
        out.setdefault(method, {})[field] = _parse_value(value)
    return out


def print_registries() -> None:
    from benchmark.backbones import BACKBONES, list_backbones
    from benchmark.methods import get_method, list_methods
    from benchmark.profiles import PROFILE_HELP
    from tasks import get_task, list_tasks

    print("methods:")
    for name in list_methods():
        cls = get_method(name)
        print(f"  {name:<18} {cls.default_backbone:<11} {(cls.__doc__ or '').strip().splitlines()[0]}")
    print("backbones:")
    for name in list_backbones():
        print(f"  {name:<18} {(BACKBONES.get(name).__doc__ or '').strip().splitlines()[0]}")
    print("tasks:")
    for name in list_tasks():
        task = get_task(name)
        print(f"  {name:<18} {task.description}")
    print(f"  {'nnunet:PATH':<18} any nnU-Net raw dataset folder (dataset.json, imagesTr/, labelsTr/); nnunet:synthetic: a built-in one")
    print("profiles:")
    for name, text in PROFILE_HELP.items():
        print(f"  {name:<18} {text}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            print_registries()
            return 0
        return run(args)
    except BenchmarkInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    from benchmark.backbones import list_backbones
    from benchmark.datasources import attach_unlabeled, resolve_task_data
    from benchmark.methods import list_methods
    from benchmark.plan import build_plan, parse_fractions, split_variant
    from benchmark.profiles import get_profile
    from benchmark.store import ResultStore
    from tasks import get_task, list_tasks
    from tasks.base import NNUNET_PREFIX

    # 1. Everything that can be checked before compute.
    methods = _names(args.methods, list_methods(), "method", base=lambda entry: split_variant(entry)[0])  # "dae:cmcl=false" is dae
    any_nnunet = f"{NNUNET_PREFIX}PATH"  # nnunet:<any folder> is valid without registration
    task_names = _names(args.tasks, [*list_tasks(), any_nnunet], "task", base=lambda n: any_nnunet if n.startswith(NNUNET_PREFIX) else n)
    task_by_name = {name: get_task(name) for name in task_names}  # nnunet:PATH reads PATH/dataset.json here
    clashes = sorted({t.name for t in task_by_name.values() if [u.name for u in task_by_name.values()].count(t.name) > 1})
    if clashes:
        raise BenchmarkInputError(f"--tasks: several tasks are named {', '.join(clashes)} (nnunet:PATH is named after the folder); expected distinct folder names")
    if args.backbone and args.backbone not in list_backbones():
        raise BenchmarkInputError(f"unknown backbone {args.backbone!r}; expected one of: {', '.join(list_backbones())}")
    fractions = parse_fractions(args.fractions)
    seeds = _parse_seeds(args.seeds)
    roots = _parse_data_roots(args.data_root, task_names)
    extra_roots = _parse_data_roots(args.pretrain_extra, task_names, flag="--pretrain-extra")
    for name, task in task_by_name.items():
        if name not in roots and task.default_data_root is not None:  # nnunet:PATH: the data are at PATH
            roots[name] = task.default_data_root
    hparams = _parse_hparams(args.hparam, methods)
    if args.num_workers < 1:
        raise BenchmarkInputError(f"--num-workers {args.num_workers}: expected >= 1")
    profile = get_profile(args.profile or ("paper" if roots else "smoke"))
    run_name = args.run_name or dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    output = args.output or Path("results") / run_name

    if not args.check_data:
        print(f"[medssl-bench] run {run_name!r}, profile {profile.name}, output {output}", flush=True)
    task_data = []
    for name in task_names:
        td = resolve_task_data(task_by_name[name], data_root=roots.get(name), cache_dir=args.cache_dir, recheck=args.check_data)
        source = "built-in synthetic data" if td.synthetic else "user data"
        if getattr(td.task, "kind", "segmentation") == "classification":
            what = f"classes {list(td.task.class_names)}"
        else:
            what = f"label values in {list(td.task.label_values)}"
        checked = f"; every file read: channels {', '.join(td.task.channels)}, {what}" if args.check_data else ""
        print(f"[medssl-bench] task {name}: {len(td.cases)} cases ({source}) at {td.root}{checked}", flush=True)
        if name in extra_roots:
            td = attach_unlabeled(td, extra_roots[name], cache_dir=args.cache_dir, recheck=args.check_data)
            print(f"[medssl-bench] task {name}: + {len(td.extra_cases)} unlabeled pretraining cases at {td.extra_root}", flush=True)
        task_data.append(td)
    if args.check_data:
        print(f"[medssl-bench] data OK: {', '.join(task_names)} (nothing trained)", flush=True)
        return 0
    plan = build_plan(methods=methods, task_data=task_data, fractions=fractions, seeds=seeds, profile=profile,
                      cache_dir=args.cache_dir, backbone=args.backbone, hparams=hparams, finetune_aug=args.finetune_aug,
                      mixup_alpha=args.mixup_alpha, missing_series=args.missing_series,
                      folds=args.folds)

    # 2. Output folder: resolved configuration, n/a cells, resume.
    store = ResultStore(output, run_name)
    store.write_json("config.json", {
        "run": run_name, "argv": sys.argv, "profile": dataclasses.asdict(profile), "methods": methods, "tasks": task_names,
        "fractions": [f.label for f in fractions], "seeds": seeds, "data_roots": {td.task.name: str(td.root) for td in task_data},
        "groups": [g.spec or {"method": g.method, "backbone": g.backbone, "task": g.task, "na": g.na_reason} for g in plan.groups],
        "python": platform.python_version(),
    })
    finished = store.finished_cells()
    for group in plan.groups:
        if group.na_reason:
            for cell in group.cells:
                store.add_cell(_cell_record(group, cell, status="n/a", reason=group.na_reason), [])
            print(f"[medssl-bench] n/a: {group.title}: {group.na_reason}", flush=True)
    pending = []
    for group in plan.runnable():
        todo = [c for c in group.cells if c.cell_id not in finished]
        if not todo:
            print(f"[medssl-bench] already done: {group.title}", flush=True)
            continue
        if len(todo) < len(group.cells):
            group.spec = {**group.spec, "cells": [s for s in group.spec["cells"] if s["cell_id"] in {c.cell_id for c in todo}]}
        pending.append(group)

    # 3. Execute on Ray, recording every cell as soon as its group returns.
    failures = _execute(pending, args=args, store=store, output=output)

    from reports.leaderboard import write_leaderboard

    md, html = write_leaderboard(output, title=f"medssl-bench leaderboard – {run_name}")
    print(f"[medssl-bench] results: {store.results_path}", flush=True)
    print(f"[medssl-bench] leaderboard: {md} and {html}", flush=True)
    if failures:
        print(f"[medssl-bench] {failures} group(s) failed; see 'failed' rows in {store.cells_path}", file=sys.stderr)
        return 1
    return 0


def _cell_record(group, cell, *, status: str, reason: str = "", result: dict | None = None, device_count: float = 1.0) -> dict:
    result = result or {}
    seconds = result.get("finetune_seconds", 0.0) + result.get("pretrain_seconds", 0.0) / max(1, len(group.cells))
    return {
        "cell_id": cell.cell_id, "method": cell.method, "backbone": cell.backbone, "task": cell.task, "fraction": cell.fraction,
        "n_labeled": cell.n_labeled, "seed": cell.seed, "fold": cell.fold, "status": status, "reason": reason,
        "label_aware": group.label_aware, "finetune_aug": group.config["finetune_aug"],
        "missing_series": group.config.get("missing_series", 0.0), "config_id": cell.cell_id.rsplit("|", 1)[-1], "pretrain_hash": group.pretrain_key or "", "pretrain_reused": bool(result.get("pretrain_reused", False)),
        "pretrain_seconds": result.get("pretrain_seconds"), "finetune_seconds": result.get("finetune_seconds"),
        "device_hours": seconds * device_count / 3600.0 if result else None,
        # resolved method config (paper defaults + overrides), the overrides alone (for the report's row labels), the run spec
        "config": json.dumps({**{k: v for k, v in (group.spec or {}).items() if k not in ("cells", "train_ids", "test_ids", "hparams")},
                              "hparams": group.config, "hparams_overrides": group.hparams, "labeled_ids": cell.labeled_ids}, sort_keys=True),
    }


def _execute(groups, *, args, store, output: Path) -> int:
    if not groups:
        return 0
    from benchmark import ray_runner

    dashboard = ray_runner.start_ray(args.address, dashboard=not args.no_dashboard)
    if dashboard:
        print(f"[medssl-bench] Ray dashboard: {dashboard}", flush=True)
    by_name = {f"{g.method}-{g.backbone}-{g.task}-s{g.seed}-f{g.fold}-{(g.pretrain_key or 'scratch')[:8]}-{g.cells[0].cell_id[-8:]}": g for g in groups}
    device_count = args.num_workers * (args.gpus_per_worker or 1)
    failures = 0
    done = 0
    started = time.perf_counter()

    def on_done(name, results, error):
        nonlocal failures, done
        group = by_name[name]
        done += 1
        if error is not None:
            failures += 1
            message = error.splitlines()[0][:500]
            for cell in group.cells:
                if any(s["cell_id"] == cell.cell_id for s in group.spec["cells"]):
                    store.add_cell(_cell_record(group, cell, status="failed", reason=message), [])
            print(f"[medssl-bench] [{done}/{len(groups)}] FAILED {group.title}: {message}", flush=True)
            return
        cells = {c.cell_id: c for c in group.cells}
        summary = []
        for result in results:
            cell = cells[result["cell_id"]]
            rows = [{"method": cell.method, "backbone": cell.backbone, "task": cell.task, "fraction": cell.fraction,
                     "n_labeled": cell.n_labeled, "seed": cell.seed, "fold": cell.fold, "case_id": case, "metric": metric, "value": value}
                    for case, metric, value in result["rows"]]
            store.add_cell(_cell_record(group, cell, status="done", result=result, device_count=device_count), rows)
            means = [r["value"] for r in rows if r["metric"] == "dice_mean"]
            aucs = [r["value"] for r in rows if r["metric"] == "auc"]  # classification tasks: one set-level AUC, no Dice
            if means or not aucs:
                summary.append(f"{cell.fraction}: dice_mean {sum(means) / max(1, len(means)):.3f}")
            else:
                summary.append(f"{cell.fraction}: auc {aucs[0]:.3f}")
        reused = " (pretraining reused)" if results and results[0]["pretrain_reused"] else ""
        print(f"[medssl-bench] [{done}/{len(groups)}] {group.title}{reused}: {'; '.join(summary)}  [{time.perf_counter() - started:.0f}s]", flush=True)

    jobs = [(name, g.spec) for name, g in by_name.items()]
    print(f"[medssl-bench] running {len(jobs)} Ray Train job(s) ({sum(len(g.spec['cells']) for g in groups)} cells)", flush=True)
    ray_runner.run_groups(jobs, num_workers=args.num_workers, gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                          concurrency=args.concurrency, storage=output / "ray", on_done=on_done)
    return failures
