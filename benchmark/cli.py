"""Command line -> a validated ``RunRequest`` (parsing and checks only; ``benchmark.run`` runs it).

Every check that can be made before compute is made here or in the planner, and a bad name,
flag value or data folder stops the run with one message and exit code 2. One syntax sets
hyperparameters everywhere: ``METHOD:KEY=VALUE[:KEY=VALUE...]``, values read as JSON where they
parse (``false``, ``0.5``, ``[1, 2]``) and as text otherwise (``parse_value``). In ``--methods`` it
adds a variant row next to the method's default row (an ablation); with ``--hparam`` it changes
every row of that method.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkInputError
from benchmark.records import PRECISION_CHOICES, ExecutionSettings, FinetuneSettings
from benchmark.request import RayOptions, ReportOptions, RunRequest, SearchOptions

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
    p.add_argument("--pretrain-corpus", default="auto", metavar="auto|none|TASK,TASK",
                   help="one pretraining corpus for the methods that pretrain on single-modality samples tagged with their modality (DAE): "
                        "the non-test cases of these tasks (+ their --pretrain-extra), pretrained once and fine-tuned on every task; "
                        "auto: the run's tasks when there are several; none: each task pretrains on its own cases (default: %(default)s)")
    p.add_argument("--backbone", help="run every method on this backbone where it allows it (default: each method's paper backbone)")
    p.add_argument("--hparam", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="set a hyperparameter of every row of METHOD, e.g. csi:pool_size=7 (same syntax as a --methods variant)")
    p.add_argument("--finetune-aug", choices=["none", "mixup", "carvemix"], default="none",
                   help="fine-tuning augmentation for every method: mixup (SI paper 6.4) or carvemix (default: %(default)s)")
    p.add_argument("--mixup-alpha", type=float, help="mixup Beta(alpha, alpha) parameter (default: 0.4, benchmark.protocol)")
    p.add_argument("--spatial-aug", choices=["auto", "none", "si", "ladp", "csm", "dae"], default="auto",
                   help="flips / rotation / scaling / elastic / intensity augmentation of every fine-tuning sample, the same draws for "
                        "every method: a paper's policy (benchmark/spatial_augmentation.py), none, or auto = the policy of the "
                        "paper each task comes from (default: %(default)s)")
    p.add_argument("--finetune-loss", choices=["auto", "default", "dicefocal"], default="auto",
                   help="fine-tuning loss of every method: default = the task's Dice + CE, dicefocal = LADP eq. 7 (BCE + Dice + "
                        "3 Focal; hie only), auto = the loss of the paper each task comes from (hie: dicefocal) (default: %(default)s)")
    p.add_argument("--tta", choices=["auto", "none", "flip"], default="auto",
                   help="test-time augmentation of the test predictions: flip = mean over the in-plane flips (LADP II.D; "
                        "segmentation only), auto = that of the paper each task comes from (hie: flip) (default: %(default)s)")
    p.add_argument("--missing-series", type=float, default=0.0, metavar="SHARE",
                   help="share of fine-tuning and test cases with one or two series zeroed (CSM paper Table VII, "
                        "'Complete-series x'); the same cases for every method (default: %(default)s, complete data)")
    p.add_argument("--output", type=Path, help="output folder (default: ./results/<run-name>)")
    p.add_argument("--run-name", help="run name; reusing one resumes that run, skipping finished cells (default: a timestamp)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="pretrained checkpoints and synthetic data (default: %(default)s; env MEDSSL_CACHE)")
    p.add_argument("--storage", metavar="URI",
                   help="where everything workers write and other processes read lives (prepared cases, pretraining cache, "
                        "checkpoints, Ray Train/Tune storage, search records): a path every node sees, or s3://bucket/prefix, "
                        "gs://..., any pyarrow / fsspec file system; nodes then need no shared disk (default: the cache folder)")
    p.add_argument("--address", help="Ray cluster to join, e.g. 'auto' (default: start an embedded local cluster)")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers per job (DDP) (default: %(default)s)")
    p.add_argument("--gpus-per-worker", type=float, help="GPUs per Ray Train worker (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--cpus-per-worker", type=float, help="CPUs per Ray Train worker (default: half the cluster's CPUs per job)")
    p.add_argument("--concurrency", type=int, help="Ray Train jobs at once (default: as many as the resources fit)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard with the embedded cluster")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's, Tune's and the workers' own output on the console too (it always goes to <output>/logs/run.log)")
    p.add_argument("--prepare", action="store_true",
                   help="only decode and pre-process the tasks' cases once into the cache (memory-mapped arrays every Job shares), then exit")
    p.add_argument("--prepare-workers", type=int, metavar="K", help="processes preparing cases at once (default: the CPUs of this machine)")
    p.add_argument("--loader-workers", type=int, default=0, metavar="K",
                   help="DataLoader processes building each Job's training batches (same batches for any K) (default: %(default)s)")
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="cap every training stage at N steps (a dry run: memory and step time; its rows are marked as not results)")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="every training stage writes a checkpoint every N steps and at its end, and an interrupted stage continues "
                        "from its last one (default: every 15 minutes of a stage)")
    p.add_argument("--max-failures", type=int, default=2, metavar="K",
                   help="retries of a Job whose worker dies (killed, out of memory, node lost); it continues from its checkpoints "
                        "(default: %(default)s)")
    p.add_argument("--precision", choices=list(PRECISION_CHOICES), default="fp32",
                   help="training precision: autocast to bf16 / fp16 (fp16 with loss scaling) (default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="torch.compile the trained networks")
    p.add_argument("--channels-last", action="store_true", help="2D networks in channels-last memory format on CUDA")
    p.add_argument("--yes", action="store_true", help="start a paper-profile run whose estimate exceeds an hour on a machine without GPUs")
    p.add_argument("--tune", type=int, default=0, metavar="N",
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
    p.add_argument("--stat-test", choices=["ttest", "wilcoxon"], default="ttest",
                   help="paired test of each row against its scratch baseline in the report (default: %(default)s, as the SI paper)")
    p.add_argument("--no-holm", dest="holm", action="store_false", default=True,
                   help="report p-values without correction for multiple comparisons (default: Holm per table)")
    p.add_argument("--holm", dest="holm", action="store_true", help=argparse.SUPPRESS)  # the default; kept for older command lines
    p.add_argument("--paper-dataset", action="append", default=[], metavar="TASK=DATASET",
                   help="say that TASK's data is a paper's in-house cohort, so that paper's published rows appear beside it "
                        "in the report (e.g. mri_cls=Breast2023 for the CSM paper's breast cohort); repeatable")
    return p


def report_options(args: argparse.Namespace) -> ReportOptions:
    """The report's options: --stat-test, --no-holm, --publish, --paper-dataset TASK=DATASET."""
    datasets = {}
    for item in args.paper_dataset:
        task, sep, dataset = item.partition("=")
        if not sep or not task.strip() or not dataset.strip():
            raise BenchmarkInputError(f"--paper-dataset {item!r}: expected TASK=DATASET, e.g. mri_cls=Breast2023")
        datasets[task.strip()] = dataset.strip()
    return ReportOptions(test=args.stat_test, holm=args.holm, publish=args.publish, paper_datasets=tuple(sorted(datasets.items())))


def parse_value(text: str) -> Any:
    """The one value parser: JSON where it parses (false, 0.5, [1, 2], "x"), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_method_entry(entry: str, *, flag: str = "--methods") -> tuple[str, dict[str, Any]]:
    """"dae:cmcl=false:noise=false" -> ("dae", {"cmcl": False, "noise": False}); "dae" -> ("dae", {})."""
    name, *settings = entry.strip().split(":")
    overrides: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not (sep and key):
            raise BenchmarkInputError(f"{flag} {entry!r}: expected METHOD:KEY=VALUE[:KEY=VALUE...], e.g. dae:cmcl=false")
        overrides[key] = parse_value(value)
    return name, overrides


def parse_fractions(text: str) -> list:
    from benchmark.plan import Fraction

    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        if re.fullmatch(r"\d+(\.\d+)?%", item):
            percent = float(item[:-1])
            if not 0 < percent <= 100:
                raise BenchmarkInputError(f"--fractions: {item!r} is outside (0%, 100%]")
            out.append(Fraction(label=f"{percent:g}%", percent=percent))
        elif re.fullmatch(r"\d+", item) and int(item) > 0:
            out.append(Fraction(label=f"{int(item)} cases", count=int(item)))
        else:
            raise BenchmarkInputError(f"--fractions: {item!r} is not a percentage like '25%' or a case count like '5'")
    if not out:
        raise BenchmarkInputError("--fractions is empty; expected e.g. '100%,25%'")
    return list({f.label: f for f in out}.values())  # "25%,25.0%" is one fraction


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


def _parse_corpus(text: str, task_names: list[str], *, valid: list[str], base) -> list[str] | None:
    """--pretrain-corpus: None (each task on its own) for ``none``, and for ``auto`` with a single task; the task names else."""
    text = text.strip()
    if text == "none":
        return None
    if text == "auto":
        return list(task_names) if len(task_names) > 1 else None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if base(n) not in valid]
    if not names or unknown:
        raise BenchmarkInputError(f"--pretrain-corpus {text!r}: expected auto, none or comma-separated task names from: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def _parse_data_roots(items: list[str], tasks: list[str], flag: str = "--data-root", *, also: list[str] = ()) -> dict[str, Path]:
    """TASK=PATH per task (``also``: tasks only named by --pretrain-corpus), or a bare PATH for a single task."""
    roots: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name in [*tasks, *also]:
            roots[name] = Path(path)
        elif sep and not os.path.exists(item):
            raise BenchmarkInputError(f"{flag} {item!r}: {name!r} is not one of the chosen tasks ({', '.join([*tasks, *also])})")
        elif len(tasks) == 1:
            roots[tasks[0]] = Path(item)
        else:
            raise BenchmarkInputError(f"{flag} {item!r}: with several tasks, write TASK=PATH (tasks: {', '.join(tasks)})")
    return roots


def _parse_hparams(items: list[str], method_names: set[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head = item.split("=", 1)[0]
        if "." in head and ":" not in head:
            raise BenchmarkInputError(f"--hparam {item!r}: expected METHOD:KEY=VALUE, e.g. {head.replace('.', ':', 1)}={item.partition('=')[2]}")
        method, overrides = parse_method_entry(item, flag="--hparam")
        if not overrides:
            raise BenchmarkInputError(f"--hparam {item!r}: expected METHOD:KEY=VALUE, e.g. csi:pool_size=7")
        if method not in method_names:
            raise BenchmarkInputError(f"--hparam {item!r}: method {method!r} is not among --methods ({', '.join(sorted(method_names))})")
        out.setdefault(method, {}).update(overrides)
    return out


def _current_spelling(entry: str) -> str:
    """A method entry with a deprecated name (e.g. l1+coper_swav_resnet) as its current spelling, said once on stderr."""
    from benchmark.methods import resolve_method_alias

    current, old = resolve_method_alias(entry)
    if old is not None:
        print(f"note: method {old} is deprecated: use {current.strip()} (running that)", file=sys.stderr)
    return current


def build_request(args: argparse.Namespace, argv: list[str] | None = None) -> RunRequest:
    from benchmark.backbones import list_backbones
    from benchmark.methods import list_methods
    from benchmark.plan import MethodEntry
    from benchmark.profiles import get_profile
    from tasks import get_task
    from tasks.base import task_choices, task_prefix

    methods_text = ",".join(_current_spelling(e) for e in args.methods.split(","))
    entries = _names(methods_text, list_methods(), "method", base=lambda entry: parse_method_entry(entry)[0])  # "dae:cmcl=false" is dae
    parsed = [parse_method_entry(e) for e in entries]
    hparams = _parse_hparams([_current_spelling(h) for h in args.hparam], {name for name, _ in parsed})
    methods = tuple(MethodEntry(name, {**hparams.get(name, {}), **variant}) for name, variant in parsed)
    # A registered name, or a reference of a registered prefix (nnunet:PATH, synthesis:TASK:SRC->TGT): valid without
    # registration; get_task checks the reference itself (the folder, the series).
    as_choice = lambda n: prefix.usage if (prefix := task_prefix(n)) else n  # noqa: E731
    task_names = _names(args.tasks, task_choices(), "task", base=as_choice)
    tasks = tuple(get_task(name) for name in task_names)  # nnunet:PATH reads PATH/dataset.json here
    names = [t.name for t in tasks]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise BenchmarkInputError(f"--tasks: several tasks are named {', '.join(clashes)} (nnunet:PATH is named after the folder); expected distinct folder names")
    if args.backbone and args.backbone not in list_backbones():
        raise BenchmarkInputError(f"unknown backbone {args.backbone!r}; expected one of: {', '.join(list_backbones())}")
    corpus_names = _parse_corpus(args.pretrain_corpus, task_names, valid=task_choices(), base=as_choice)
    corpus_only = [n for n in corpus_names or [] if n not in task_names]
    named = list(zip([*tasks, *(get_task(n) for n in corpus_only)], [*task_names, *corpus_only]))
    roots = _parse_data_roots(args.data_root, task_names, also=corpus_only)
    roots = {next(t.name for t, n in named if n == name): path for name, path in roots.items()}
    extra = _parse_data_roots(args.pretrain_extra, task_names, flag="--pretrain-extra", also=corpus_only)
    extra = {next(t.name for t, n in named if n == name): path for name, path in extra.items()}
    corpus = tuple(next(t for t, n in named if n == name) for name in corpus_names) if corpus_names else None  # in the order given
    for task, _ in named:
        if task.name not in roots and task.default_data_root is not None:  # nnunet:PATH: the data are at PATH
            roots[task.name] = task.default_data_root
    if args.max_failures < 0:
        raise BenchmarkInputError(f"--max-failures {args.max_failures}: expected >= 0")
    if args.num_workers < 1:
        raise BenchmarkInputError(f"--num-workers {args.num_workers}: expected >= 1")
    if not 0.0 <= args.missing_series <= 1.0:
        raise BenchmarkInputError(f"--missing-series {args.missing_series}: expected a share of cases in [0, 1]")
    if args.mixup_alpha is not None and args.mixup_alpha <= 0:
        raise BenchmarkInputError(f"--mixup-alpha {args.mixup_alpha}: expected > 0")
    profile = get_profile(args.profile or ("paper" if roots else "smoke"))
    try:
        execution = ExecutionSettings(precision=args.precision, compile=args.compile, loader_workers=args.loader_workers,
                                      max_steps=args.max_steps, channels_last=args.channels_last, checkpoint_every=args.checkpoint_every)
    except ValueError as exc:
        raise BenchmarkInputError(str(exc)) from None
    if args.prepare_workers is not None and args.prepare_workers < 1:
        raise BenchmarkInputError(f"--prepare-workers {args.prepare_workers}: expected >= 1")
    run_name = args.run_name or dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    fractions = parse_fractions(args.fractions)
    if args.tune < 0:
        raise BenchmarkInputError(f"--tune {args.tune}: expected a number of trials >= 0")
    tune_fraction = None
    if args.tune_fraction:
        (wanted,) = parse_fractions(args.tune_fraction)
        if wanted.label not in {f.label for f in fractions}:
            raise BenchmarkInputError(f"--tune-fraction {args.tune_fraction!r}: expected one of --fractions ({', '.join(f.label for f in fractions)})")
        tune_fraction = wanted.label
    if args.tune:  # every space must import before any compute (a broken space is an error, not "nothing to tune")
        from search_spaces import get_space

        for name in {m.name for m in methods}:
            get_space(name)
    return RunRequest(
        methods=methods, tasks=tasks, fractions=tuple(fractions), seeds=tuple(_parse_seeds(args.seeds)), folds=args.folds,
        profile=profile, data_roots=roots, extra_roots=extra, backbone=args.backbone, pretrain_corpus=corpus,
        finetune=FinetuneSettings(augmentation=args.finetune_aug, mixup_alpha=args.mixup_alpha if args.finetune_aug == "mixup" else None,
                                  missing_series=args.missing_series, spatial_aug=args.spatial_aug, loss=args.finetune_loss, tta=args.tta),
        run_name=run_name, output=args.output or Path("results") / run_name, cache_dir=args.cache_dir, check_data=args.check_data,
        ray=RayOptions(address=args.address, num_workers=args.num_workers, gpus_per_worker=args.gpus_per_worker,
                       cpus_per_worker=args.cpus_per_worker, concurrency=args.concurrency, dashboard=not args.no_dashboard,
                       max_failures=args.max_failures),
        report=report_options(args), argv=tuple(argv if argv is not None else sys.argv),
        search=SearchOptions(trials=args.tune, fraction=tune_fraction, finetune_lr=args.tune_finetune, finetune_batch_size=args.tune_batch_size,
                             max_concurrent=args.max_concurrent_trials),
        execution=execution, prepare_only=args.prepare, prepare_workers=args.prepare_workers, confirmed=args.yes, verbose=args.verbose,
        storage=_parse_storage(args.storage),
    )


def _parse_storage(value: str | None) -> str | None:
    """``--storage``: a path (made absolute) or a URI whose file system exists (pyarrow's or fsspec's)."""
    if value is None:
        return None
    from benchmark import storage

    try:
        storage.resolve(value)
    except (ValueError, OSError) as exc:
        raise BenchmarkInputError(f"--storage {value!r}: {exc}") from None
    return storage.normalise(value)


def print_registries() -> None:
    from benchmark.backbones import BACKBONES, list_backbones
    from benchmark.methods import get_method, list_methods
    from benchmark.profiles import PROFILE_HELP
    from tasks import get_task, list_tasks
    from tasks.base import list_task_prefixes

    print("methods (paper backbone first; * = also runs on):")
    for name in list_methods():
        cls = get_method(name)
        others = [b for b in cls.supported_backbones if b != cls.default_backbone]
        backbones = cls.default_backbone + (f" *{','.join(others)}" if others else "")
        print(f"  {name:<18} {backbones:<45} {(cls.__doc__ or '').strip().splitlines()[0]}")
    print("backbones:")
    for name in list_backbones():
        print(f"  {name:<18} {(BACKBONES.get(name).__doc__ or '').strip().splitlines()[0]}")
    print("tasks:")
    for name in list_tasks():
        task = get_task(name)
        print(f"  {name:<18} [{task.kind}] {task.description}")
    for prefix in list_task_prefixes():
        print(f"  {prefix.usage:<18} [{prefix.kind}] {prefix.help}")
    print("profiles:")
    for name, text in PROFILE_HELP.items():
        print(f"  {name:<18} {text}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            print_registries()
            return 0
        if args.report:
            from benchmark.run import report_only

            return report_only(args.report, output=args.output, options=report_options(args))
        from benchmark.run import execute

        return execute(build_request(args, argv))
    except BenchmarkInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: finished cells and search trials are kept; the same command continues
        print("interrupted: run the same command again to continue (finished cells and search trials are kept)", file=sys.stderr)
        return 130
