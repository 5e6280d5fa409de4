"""Command line -> ``RunOptions`` -> the run (``benchmark.api``, which the command line is a thin layer on).

This module holds the arguments and their help only: every flag is a field of ``benchmark.api.RunOptions`` (its
default included), every check that can be made before compute is made by ``benchmark.api.build_request`` or the
planner, and a bad name, flag value, data folder or checkpoint stops the run with one message and exit code 2. One
syntax sets hyperparameters everywhere: ``METHOD:KEY=VALUE[:KEY=VALUE...]``, values read as JSON where they parse
(``false``, ``0.5``, ``[1, 2]``) and as text otherwise (``parse_value``). In ``--methods`` it adds a variant row next
to the method's default row (an ablation); with ``--hparam`` it changes every row of that method.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from benchmark import api, plugins
from benchmark.api import RunOptions, parse_fractions, parse_method_entry, parse_value  # noqa: F401  (the value parsers, here as before)
from benchmark.errors import BenchmarkInputError
from benchmark.records import PRECISION_CHOICES
from benchmark.request import ReportOptions, RunRequest

_DEFAULTS = RunOptions()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_benchmark.py",
        description="Pretrain SSL objectives, fine-tune them on medical segmentation tasks at several label fractions, and write a leaderboard.",
    )
    p.add_argument("--list", action="store_true", help="list methods, backbones, tasks and profiles, then exit")
    p.add_argument("--check-data", action="store_true",
                   help="validate every file of the chosen tasks (layout, modalities, shapes, affines, NaN, label values) and exit; no training")
    p.add_argument("--methods",
                   help="comma-separated method names; METHOD:KEY=VALUE[:KEY=VALUE] adds a variant (an ablation), "
                        f"e.g. dae,dae:cmcl=false (default: {api.DEFAULT_METHODS}; with --pretrained: only the checkpoints' rows)")
    p.add_argument("--tasks", help="comma-separated task names (default: %(default)s)")
    p.add_argument("--fractions", help="label fractions: percentages ('25%%') or case counts ('5') (default: %(default)s)")
    p.add_argument("--seeds", help="comma-separated seeds; each is its own random patient-wise split, "
                                                "labelled subset and initialisation (default: %(default)s)")
    p.add_argument("--folds", type=int, help="k-fold cross-validation per seed (DAE/FeTA, LADP); 1: one hold-out "
                                                        "test split (default: %(default)s)")
    p.add_argument("--profile", help="smoke: minutes on a CPU; paper: each paper's recipe; tiny: 2 steps per stage (default: smoke without --data-root, paper with it)")
    p.add_argument("--data-root", action="append", metavar="[TASK=]PATH",
                   help="real dataset folder in the task's layout; TASK=PATH per task, a bare PATH for a single task; omitted -> built-in synthetic data")
    p.add_argument("--pretrain-extra", action="append", metavar="[TASK=]PATH",
                   help="extra unlabeled cases for pretraining only, PATH/<case>/<channel>.nii.gz per channel of the task "
                        "(default: pretrain on the task's training cases, the SI paper's protocol)")
    p.add_argument("--pretrain-corpus", metavar="auto|none|TASK,TASK",
                   help="one pretraining corpus for the methods that pretrain on single-modality samples tagged with their modality (DAE): "
                        "the non-test cases of these tasks (+ their --pretrain-extra), pretrained once and fine-tuned on every task; "
                        "auto: the run's tasks when there are several; none: each task pretrains on its own cases (default: %(default)s)")
    p.add_argument("--pretrained", action="append", metavar="NAME=PATH[:backbone=B]",
                   help="add a leaderboard row NAME fine-tuned from the backbone weights in PATH (a local file or a storage URI; a "
                        "state dict, {'state_dict': ...} or {'model': ...}, DDP 'module.' / 'backbone.' prefixes, MONAI's "
                        "Swin-UNETR SSL model_swinvit.pt, or a file of this suite's cache), compared with scratch on backbone B")
    p.add_argument("--backbone", help="run every method on this backbone where it allows it (default: each method's paper backbone)")
    p.add_argument("--hparam", action="append", metavar="METHOD:KEY=VALUE",
                   help="set a hyperparameter of every row of METHOD, e.g. csi:pool_size=7 (same syntax as a --methods variant)")
    p.add_argument("--finetune-aug", choices=["none", "mixup", "carvemix"],
                   help="fine-tuning augmentation for every method: mixup (SI paper 6.4) or carvemix (default: %(default)s)")
    p.add_argument("--mixup-alpha", type=float, help="mixup Beta(alpha, alpha) parameter (default: 0.4, benchmark.protocol)")
    p.add_argument("--spatial-aug", choices=["profile", "auto", "none", "si", "ladp", "csm", "dae"],
                   help="flips / rotation / scaling / elastic / intensity augmentation of every fine-tuning sample, the same draws for "
                        "every method: a paper's policy (benchmark/spatial_augmentation.py), none, auto = the policy of the "
                        "paper each task comes from, or profile = the run profile's (paper: auto; smoke: auto but none on btcv) (default: %(default)s)")
    p.add_argument("--finetune-loss", choices=["auto", "default", "dicefocal"],
                   help="fine-tuning loss of every method: default = the task's Dice + CE, dicefocal = LADP eq. 7 (BCE + Dice + "
                        "3 Focal; hie only), auto = the loss of the paper each task comes from (hie: dicefocal) (default: %(default)s)")
    p.add_argument("--tta", choices=["auto", "none", "flip"],
                   help="test-time augmentation of the test predictions: flip = mean over the in-plane flips (LADP II.D; "
                        "segmentation only), auto = that of the paper each task comes from (hie: flip) (default: %(default)s)")
    p.add_argument("--missing-series", type=float, metavar="SHARE",
                   help="share of fine-tuning and test cases with one or two series zeroed (CSM paper Table VII, "
                        "'Complete-series x'); the same cases for every method (default: %(default)s, complete data)")
    p.add_argument("--output", type=Path, help="output folder (default: ./results/<run-name>)")
    p.add_argument("--run-name", help="run name; reusing one resumes that run, skipping finished cells (default: a timestamp)")
    p.add_argument("--cache-dir", type=Path, help="pretrained checkpoints and synthetic data (default: %(default)s; env MEDSSL_CACHE)")
    p.add_argument("--storage", metavar="URI",
                   help="where everything workers write and other processes read lives (prepared cases, pretraining cache, "
                        "checkpoints, Ray Train/Tune storage, search records): a path every node sees, or s3://bucket/prefix, "
                        "gs://..., any pyarrow / fsspec file system; nodes then need no shared disk (default: the cache folder)")
    p.add_argument("--address", help="Ray cluster to join, e.g. 'auto' (default: start an embedded local cluster)")
    p.add_argument("--num-workers", type=int, help="Ray Train workers per job (DDP) (default: %(default)s)")
    p.add_argument("--gpus-per-worker", type=float, help="GPUs per Ray Train worker (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--cpus-per-worker", type=float, help="CPUs per Ray Train worker (default: half the cluster's CPUs per job)")
    p.add_argument("--concurrency", type=int, help="Ray Train jobs at once (default: as many as the resources fit)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard with the embedded cluster")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's, Tune's and the workers' own output on the console too (it always goes to <output>/logs/run.log)")
    p.add_argument("--prepare", action="store_true",
                   help="only decode and pre-process the tasks' cases once into the cache (memory-mapped arrays every Job shares), then exit")
    p.add_argument("--prepare-workers", type=int, metavar="K", help="processes preparing cases at once (default: the CPUs of this machine)")
    p.add_argument("--loader-workers", type=int, metavar="K",
                   help="DataLoader processes building each Job's training batches (same batches for any K) (default: %(default)s)")
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="cap every training stage at N steps (a dry run: memory and step time; its rows are marked as not results)")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="every training stage writes a checkpoint every N steps and at its end, and an interrupted stage continues "
                        "from its last one (default: every 15 minutes of a stage)")
    p.add_argument("--max-failures", type=int, metavar="K",
                   help="retries of a Job whose worker dies (killed, out of memory, node lost); it continues from its checkpoints "
                        "(default: %(default)s)")
    p.add_argument("--precision", choices=list(PRECISION_CHOICES),
                   help="training precision: autocast to bf16 / fp16 (fp16 with loss scaling) (default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="torch.compile the trained networks")
    p.add_argument("--channels-last", action="store_true", help="2D networks in channels-last memory format on CUDA")
    p.add_argument("--yes", action="store_true", help="start a paper-profile run whose estimate exceeds an hour on a machine without GPUs")
    p.add_argument("--tune", type=int, metavar="N",
                   help="search each method's hyperparameters (search_spaces/<method>.py) with N Ray Tune + Optuna trials per method x "
                        "backbone x task on the validation cases, then run every cell with the best configuration (default: no search)")
    p.add_argument("--tune-fraction", help="the label fraction the search fine-tunes at (default: the smallest requested)")
    p.add_argument("--tune-finetune", action="store_true",
                   help="add the fine-tuning learning rate to every method's search space, scratch included (same budget for all)")
    p.add_argument("--tune-batch-size", action="store_true", help="with --tune-finetune: search the fine-tuning batch size too")
    p.add_argument("--max-concurrent-trials", type=int, help="search trials at once (default: as many as the resources fit)")
    p.add_argument("--report", nargs="+", type=Path, metavar="RESULTS_DIR",
                   help="only build the report from these finished run folders (their tables merge; nothing trains) and exit")
    p.add_argument("--publish", type=Path, metavar="SITE_DIR", help="also copy the report's static HTML site to SITE_DIR")
    p.add_argument("--stat-test", choices=["ttest", "wilcoxon"],
                   help="paired test of each row against its scratch baseline in the report (default: %(default)s, as the SI paper)")
    p.add_argument("--no-holm", dest="holm", action="store_false",
                   help="report p-values without correction for multiple comparisons (default: Holm per table)")
    p.add_argument("--holm", dest="holm", action="store_true", help=argparse.SUPPRESS)  # the default; kept for older command lines
    p.add_argument("--paper-dataset", action="append", metavar="TASK=DATASET",
                   help="say that TASK's data is a paper's in-house cohort, so that paper's published rows appear beside it "
                        "in the report (e.g. mri_cls=Breast2023 for the CSM paper's breast cohort); repeatable")
    # One definition of every option's default: RunOptions (what benchmark.api.run takes as keywords).
    p.set_defaults(**{f.name: getattr(_DEFAULTS, f.name) for f in dataclasses.fields(RunOptions)})
    return p


def options(args: argparse.Namespace) -> RunOptions:
    """The parsed arguments as the run's options (every run flag is a ``RunOptions`` field of the same name)."""
    return RunOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions)})


def report_options(args: argparse.Namespace) -> ReportOptions:
    """The report's options: --stat-test, --no-holm, --publish, --paper-dataset TASK=DATASET (``benchmark.api.report_options``)."""
    return api.report_options(stat_test=args.stat_test, holm=args.holm, publish=args.publish, paper_dataset=args.paper_dataset)


def build_request(args: argparse.Namespace, argv: list[str] | None = None) -> RunRequest:
    """The validated ``RunRequest`` of parsed arguments (``benchmark.api.build_request``)."""
    return api.build_request(options(args), argv=argv if argv is not None else sys.argv)


def print_registries() -> None:
    """``--list``: every method (its backbones, paper's first), backbone, task and profile; a plugin's package beside it,
    and each plugin that was left out, with why."""
    table = api.registries()
    titles = {"method": "methods (paper backbone first; * = also runs on):", "backbone": "backbones:", "task": "tasks:", "profile": "profiles:"}
    for kind, rows in table.groupby("kind", sort=False):
        print(titles[kind])
        for row in rows.itertuples():
            backbones = ""
            if kind == "method":
                default, *others = row.backbones.split(",")
                backbones = f"{default + (' *' + ','.join(others) if others else ''):<45} "
            plugin = f"  [plugin: {row.package}]" if row.package else ""
            print(f"  {row.name:<18} {backbones}{row.description}{plugin}")
    problems = plugins.problems()
    if problems:
        print("plugins left out:")
        for problem in problems:
            print(f"  {problem}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            print_registries()
            return 0
        if args.report:
            api.report(args.report, output=args.output, stat_test=args.stat_test, holm=args.holm, publish=args.publish,
                       paper_dataset=args.paper_dataset)
            return 0
        return api.run_options(options(args), argv=argv if argv is not None else sys.argv).exit_code
    except BenchmarkInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: finished cells and search trials are kept; the same command continues
        print("interrupted: run the same command again to continue (finished cells and search trials are kept)", file=sys.stderr)
        return 130
