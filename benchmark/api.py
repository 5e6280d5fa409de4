"""The Python API: what the command line runs, from a script or a notebook, without a subprocess.

    from benchmark.api import run

    result = run(methods=["csi", "dae:cmcl=false"], tasks="brats", fractions="100%", profile="tiny")
    result.results                 # the tidy results table (results.csv) as a pandas DataFrame
    result.output                  # the run's folder: report (leaderboard.md, index.html), cells.csv, logs/run.log
    table, folder = result         # the same two

Every keyword is a command-line option spelled in Python (``--data-root`` -> ``data_root``, ``--no-dashboard`` ->
``no_dashboard``) and takes the same values (``RunOptions``: one definition of the options and their defaults, the
command line's included); a list is accepted where the option takes a comma-separated list or repeats
(``methods=["csi", "dae"]``, ``seeds=[0, 1]``), and a dict where it takes ``KEY=VALUE`` items
(``data_root={"brats": "/data/BraTS2018"}``, ``pretrained={"mine": "/ckpt/model.pt:backbone=swin_unetr"}``,
``hparam={"csi": {"pool_size": 7}}``). A bad value raises ``BenchmarkInputError`` naming it (the command line prints
it and exits with code 2). ``report(...)`` rebuilds a report from finished folders, ``registries()`` lists what can
run. ``benchmark.cli`` is a thin layer on this module: arguments -> ``RunOptions`` -> ``run_options``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd

from benchmark import plugins
from benchmark.errors import BenchmarkInputError
from benchmark.records import ExecutionSettings, FinetuneSettings
from benchmark.request import RayOptions, ReportOptions, RunRequest, SearchOptions

DEFAULT_METHODS = "csi,dae,csm"


def default_cache() -> Path:
    """``MEDSSL_CACHE``, else ``~/.cache/medssl-bench`` (read when a run starts, so a notebook may set it first)."""
    return Path(os.environ.get("MEDSSL_CACHE", Path.home() / ".cache" / "medssl-bench"))


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run, with its default: the command line's flags (``benchmark.cli`` help texts) and ``run``'s
    keywords. Values are as the command line takes them (comma-separated text, ``KEY=VALUE`` items); ``run`` also
    accepts lists and dicts and writes them so."""

    methods: str | None = None  # None: csi,dae,csm; with --pretrained, only the checkpoints' rows (and scratch)
    tasks: str = "brats,btcv"
    fractions: str = "100%,25%"
    seeds: str = "0"
    folds: int = 1
    profile: str | None = None  # None: smoke without data roots, paper with them
    data_root: list[str] = field(default_factory=list)  # [TASK=]PATH items
    pretrain_extra: list[str] = field(default_factory=list)
    pretrain_corpus: str = "auto"
    pretrained: list[str] = field(default_factory=list)  # NAME=PATH[:backbone=B] items: external checkpoints
    backbone: str | None = None
    hparam: list[str] = field(default_factory=list)  # METHOD:KEY=VALUE items
    finetune_aug: str = "none"
    mixup_alpha: float | None = None
    spatial_aug: str = "profile"  # the run profile's (paper: auto = each task's paper policy; smoke: btcv none)
    finetune_loss: str = "auto"
    tta: str = "auto"
    missing_series: float = 0.0
    output: Path | None = None  # None: ./results/<run name>
    run_name: str | None = None  # None: a timestamp
    cache_dir: Path = field(default_factory=default_cache)
    storage: str | None = None
    address: str | None = None
    num_workers: int = 1
    gpus_per_worker: float | None = None
    cpus_per_worker: float | None = None
    concurrency: int | None = None
    no_dashboard: bool = False
    verbose: bool = False
    check_data: bool = False
    prepare: bool = False
    prepare_workers: int | None = None
    loader_workers: int = 0
    max_steps: int | None = None
    checkpoint_every: int | None = None
    max_failures: int = 2
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    yes: bool = False
    tune: int = 0
    tune_fraction: str | None = None
    tune_finetune: bool = False
    tune_batch_size: bool = False
    max_concurrent_trials: int | None = None
    stat_test: str = "ttest"
    holm: bool = True  # Holm per report table (--no-holm: uncorrected)
    publish: Path | None = None
    paper_dataset: list[str] = field(default_factory=list)  # TASK=DATASET items: a paper's in-house cohort


@dataclass(frozen=True)
class RunResult:
    """What a run returns: its tidy results table, its cell records, its folder and its exit status (0: every Job
    finished; 1: some failed, their cells are recorded ``failed`` in ``cells``). Unpacks as ``(results, output)``."""

    results: pd.DataFrame
    cells: pd.DataFrame
    output: Path
    exit_code: int

    @property
    def leaderboard(self) -> pd.DataFrame:
        """The report's table (``leaderboard.csv``: one row per table cell, with Δ / p vs scratch)."""
        path = self.output / "leaderboard.csv"
        return pd.read_csv(path) if path.exists() else pd.DataFrame()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.results, self.output))


def run(**options: Any) -> RunResult:
    """Run the benchmark with the command line's options as keywords (module docstring); returns its results."""
    return run_options(options_from(**options))


def run_options(options: RunOptions, *, argv: Iterable[str] | None = None) -> RunResult:
    """Run ``options`` (``argv``: the command line it came from, recorded in config.json)."""
    from benchmark.run import execute  # the run layer loads torch, Ray and the registries: not needed to build options

    request = build_request(options, argv=argv)
    code = execute(request)
    return collect(request.output, exit_code=code)


def collect(output: Path, *, exit_code: int = 0) -> RunResult:
    """The tables of the run folder ``output`` as a ``RunResult`` (empty tables where it has none, e.g. --check-data)."""
    from benchmark.store import ResultStore

    output = Path(output)
    if not (output / "cells.csv").exists():
        return RunResult(results=pd.DataFrame(), cells=pd.DataFrame(), output=output, exit_code=exit_code)
    store = ResultStore(output, run="")
    return RunResult(results=store.results(), cells=store.cells(), output=output, exit_code=exit_code)


def report(run_dirs: Iterable[str | Path], *, output: str | Path | None = None, stat_test: str = "ttest", holm: bool = True,
           publish: str | Path | None = None, paper_dataset: list[str] | Mapping[str, str] = ()) -> dict[str, Path]:
    """The report of finished run folders, rebuilt from their tables alone (``--report``); returns its files by kind."""
    from benchmark.run import report_only

    dirs = [Path(d) for d in run_dirs]
    options = report_options(stat_test=stat_test, holm=holm, publish=publish, paper_dataset=_items("paper_dataset", paper_dataset))
    report_only(dirs, output=Path(output) if output else None, options=options)
    out = Path(output) if output else dirs[0]
    return {path.name: path for path in (out / name for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "index.html"))
            if path.exists()}


def report_options(*, stat_test: str, holm: bool, publish: str | Path | None, paper_dataset: list[str]) -> ReportOptions:
    """The report's options: the paired test, Holm or not, where to publish, and ``TASK=DATASET`` items naming a task's
    data as a paper's in-house cohort (``--paper-dataset``)."""
    datasets = {}
    for item in paper_dataset:
        task, sep, dataset = item.partition("=")
        if not sep or not task.strip() or not dataset.strip():
            raise BenchmarkInputError(f"--paper-dataset {item!r}: expected TASK=DATASET, e.g. mri_cls=Breast2023")
        datasets[task.strip()] = dataset.strip()
    return ReportOptions(test=stat_test, holm=holm, publish=Path(publish) if publish else None, paper_datasets=tuple(sorted(datasets.items())))


# ---- keyword values -> RunOptions ----------------------------------------------------------------------------------
_LISTS = ("methods", "tasks", "fractions", "seeds", "pretrain_corpus")  # comma-separated on the command line
_ITEMS = ("data_root", "pretrain_extra", "pretrained", "hparam", "paper_dataset")  # repeated KEY=VALUE items on the command line


def options_from(**options: Any) -> RunOptions:
    """``RunOptions`` from ``run``'s keywords: lists joined with commas, dicts written as ``KEY=VALUE`` items, paths
    made ``Path``; an unknown keyword is an error listing the valid ones."""
    names = [f.name for f in dataclasses.fields(RunOptions)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise BenchmarkInputError(f"unknown option(s) {', '.join(unknown)}; expected some of: {', '.join(names)} "
                                  "(the command line's flags, '-' spelled '_')")
    values = dict(options)
    for name in _LISTS:
        if name in values and values[name] is not None and not isinstance(values[name], str):
            values[name] = ",".join(str(v) for v in values[name])
    for name in _ITEMS:
        if name in values:
            values[name] = _items(name, values[name])
    for name in ("output", "cache_dir", "publish"):
        if values.get(name) is not None:
            values[name] = Path(values[name])
    return RunOptions(**values)


def _items(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    if isinstance(value, Mapping):
        if name == "hparam":  # {"csi": {"pool_size": 7}} -> ["csi:pool_size=7"]
            return [f"{method}:" + ":".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items())
                    for method, settings in value.items()]
        return [f"{key}={path}" for key, path in value.items()]
    return [str(v) for v in value]


# ---- the one value parser and the option checks ---------------------------------------------------------------------
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


def parse_pretrained(items: list[str], *, methods: set[str], backbones: list[str]) -> list:
    """``--pretrained NAME=PATH[:backbone=B]`` -> ``PretrainedEntry``s: a row NAME fine-tuned from the backbone weights in
    PATH (a local file, or a storage URI such as s3://bucket/model.pt). The file itself is read by the planner."""
    from benchmark import storage
    from benchmark.external import PretrainedEntry

    out: dict[str, PretrainedEntry] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        location, marker, backbone = rest.rpartition(":backbone=") if ":backbone=" in rest else (rest, "", None)
        if not (sep and name and location):
            raise BenchmarkInputError(f"--pretrained {item!r}: expected NAME=PATH[:backbone=B], e.g. mine=/ckpt/model.pt:backbone=swin_unetr")
        if not plugins.NAME.fullmatch(name):
            raise BenchmarkInputError(f"--pretrained {item!r}: row name {name!r} may hold letters, digits and _ . + - only")
        if name in methods or name in out:
            raise BenchmarkInputError(f"--pretrained {item!r}: row name {name!r} is already a method or another --pretrained row; expected a new name")
        if backbone is not None and backbone not in backbones:
            raise BenchmarkInputError(f"--pretrained {item!r}: unknown backbone {backbone!r}; expected one of: {', '.join(backbones)}")
        try:
            found = storage.exists(location)
        except (ValueError, OSError) as exc:
            raise BenchmarkInputError(f"--pretrained {item!r}: {location}: {exc}") from None
        if not found:
            raise BenchmarkInputError(f"--pretrained {item!r}: no file {location}; expected a checkpoint (a state dict saved with torch.save)")
        out[name] = PretrainedEntry(name=name, location=storage.normalise(location), backbone=backbone)
    return list(out.values())


def _names(text: str, valid: list[str], kind: str, *, base=lambda name: name) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BenchmarkInputError(f"--{kind}s is empty; expected some of: {', '.join(valid)}")
    unknown = [n for n in names if base(n) not in valid]
    for name in unknown:  # a plugin that was left out: say why rather than "unknown"
        problem = plugins.problem_with(plugins.GROUPS.get(kind, ""), base(name))
        if problem is not None:
            raise BenchmarkInputError(f"{kind} {base(name)!r} is not available: {problem.plugin.where}: {problem.reason}")
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


def announce_plugin_problems() -> None:
    """Each plugin left out (``benchmark.plugins``), once, on stderr: the run goes on without it."""
    for problem in plugins.problems():
        if problem not in _ANNOUNCED:
            _ANNOUNCED.append(problem)
            print(f"warning: {problem}", file=sys.stderr)


_ANNOUNCED: list = []


def build_request(options: RunOptions, *, argv: Iterable[str] | None = None) -> RunRequest:
    """``options`` checked (every name, value, data folder and checkpoint that can be checked before compute) into the
    ``RunRequest`` that ``benchmark.run.execute`` runs; a bad one raises ``BenchmarkInputError`` naming it."""
    from benchmark.backbones import list_backbones
    from benchmark.methods import list_methods
    from benchmark.plan import MethodEntry
    from benchmark.profiles import get_profile
    from tasks import get_task
    from tasks.base import task_choices, task_prefix

    announce_plugin_problems()  # the registries above have loaded their plugins
    methods_text = options.methods if options.methods is not None else ("" if options.pretrained else DEFAULT_METHODS)
    parsed = []
    if methods_text.strip() or not options.pretrained:
        methods_text = ",".join(_current_spelling(e) for e in methods_text.split(","))
        entries = _names(methods_text, list_methods(), "method", base=lambda entry: parse_method_entry(entry)[0])  # "dae:cmcl=false" is dae
        parsed = [parse_method_entry(e) for e in entries]
    hparams = _parse_hparams([_current_spelling(h) for h in options.hparam], {name for name, _ in parsed})
    methods = tuple(MethodEntry(name, {**hparams.get(name, {}), **variant}) for name, variant in parsed)
    if options.backbone and options.backbone not in list_backbones():
        raise BenchmarkInputError(f"unknown backbone {options.backbone!r}; expected one of: {', '.join(list_backbones())}")
    pretrained = tuple(parse_pretrained(options.pretrained, methods=set(list_methods()), backbones=list_backbones()))
    # A registered name, or a reference of a registered prefix (nnunet:PATH, synthesis:TASK:SRC->TGT): valid without
    # registration; get_task checks the reference itself (the folder, the series).
    as_choice = lambda n: prefix.usage if (prefix := task_prefix(n)) else n  # noqa: E731
    task_names = _names(options.tasks, task_choices(), "task", base=as_choice)
    tasks = tuple(get_task(name) for name in task_names)  # nnunet:PATH reads PATH/dataset.json here
    names = [t.name for t in tasks]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise BenchmarkInputError(f"--tasks: several tasks are named {', '.join(clashes)} (nnunet:PATH is named after the folder); expected distinct folder names")
    corpus_names = _parse_corpus(options.pretrain_corpus, task_names, valid=task_choices(), base=as_choice)
    corpus_only = [n for n in corpus_names or [] if n not in task_names]
    named = list(zip([*tasks, *(get_task(n) for n in corpus_only)], [*task_names, *corpus_only]))
    roots = _parse_data_roots(options.data_root, task_names, also=corpus_only)
    roots = {next(t.name for t, n in named if n == name): path for name, path in roots.items()}
    extra = _parse_data_roots(options.pretrain_extra, task_names, flag="--pretrain-extra", also=corpus_only)
    extra = {next(t.name for t, n in named if n == name): path for name, path in extra.items()}
    corpus = tuple(next(t for t, n in named if n == name) for name in corpus_names) if corpus_names else None  # in the order given
    for task, _ in named:
        if task.name not in roots and task.default_data_root is not None:  # nnunet:PATH: the data are at PATH
            roots[task.name] = task.default_data_root
    if options.max_failures < 0:
        raise BenchmarkInputError(f"--max-failures {options.max_failures}: expected >= 0")
    if options.num_workers < 1:
        raise BenchmarkInputError(f"--num-workers {options.num_workers}: expected >= 1")
    if not 0.0 <= options.missing_series <= 1.0:
        raise BenchmarkInputError(f"--missing-series {options.missing_series}: expected a share of cases in [0, 1]")
    if options.mixup_alpha is not None and options.mixup_alpha <= 0:
        raise BenchmarkInputError(f"--mixup-alpha {options.mixup_alpha}: expected > 0")
    profile = get_profile(options.profile or ("paper" if roots else "smoke"))
    try:
        execution = ExecutionSettings(precision=options.precision, compile=options.compile, loader_workers=options.loader_workers,
                                      max_steps=options.max_steps, channels_last=options.channels_last,
                                      checkpoint_every=options.checkpoint_every)
    except ValueError as exc:
        raise BenchmarkInputError(str(exc)) from None
    if options.prepare_workers is not None and options.prepare_workers < 1:
        raise BenchmarkInputError(f"--prepare-workers {options.prepare_workers}: expected >= 1")
    run_name = options.run_name or dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    fractions = parse_fractions(options.fractions)
    if options.tune < 0:
        raise BenchmarkInputError(f"--tune {options.tune}: expected a number of trials >= 0")
    tune_fraction = None
    if options.tune_fraction:
        (wanted,) = parse_fractions(options.tune_fraction)
        if wanted.label not in {f.label for f in fractions}:
            raise BenchmarkInputError(f"--tune-fraction {options.tune_fraction!r}: expected one of --fractions ({', '.join(f.label for f in fractions)})")
        tune_fraction = wanted.label
    if options.tune:  # every space must import before any compute (a broken space is an error, not "nothing to tune")
        from search_spaces import get_space, untuned_reason

        for name in sorted({m.name for m in methods}):
            get_space(name)
            if (reason := untuned_reason(name)) is not None:
                print(f"note: {reason}", file=sys.stderr)
    return RunRequest(
        methods=methods, tasks=tasks, fractions=tuple(fractions), seeds=tuple(_parse_seeds(options.seeds)), folds=options.folds,
        profile=profile, data_roots=roots, extra_roots=extra, backbone=options.backbone, pretrain_corpus=corpus,
        finetune=FinetuneSettings(augmentation=options.finetune_aug, mixup_alpha=options.mixup_alpha if options.finetune_aug == "mixup" else None,
                                  missing_series=options.missing_series, spatial_aug=options.spatial_aug, loss=options.finetune_loss,
                                  tta=options.tta),
        run_name=run_name, output=options.output or Path("results") / run_name, cache_dir=Path(options.cache_dir), check_data=options.check_data,
        ray=RayOptions(address=options.address, num_workers=options.num_workers, gpus_per_worker=options.gpus_per_worker,
                       cpus_per_worker=options.cpus_per_worker, concurrency=options.concurrency, dashboard=not options.no_dashboard,
                       max_failures=options.max_failures),
        report=report_options(stat_test=options.stat_test, holm=options.holm, publish=options.publish, paper_dataset=options.paper_dataset),
        argv=tuple(argv) if argv is not None else ("benchmark.api.run", *_as_argv(options)),
        search=SearchOptions(trials=options.tune, fraction=tune_fraction, finetune_lr=options.tune_finetune,
                             finetune_batch_size=options.tune_batch_size, max_concurrent=options.max_concurrent_trials),
        execution=execution, prepare_only=options.prepare, prepare_workers=options.prepare_workers, confirmed=options.yes,
        verbose=options.verbose, storage=_parse_storage(options.storage), pretrained=pretrained,
    )


def _as_argv(options: RunOptions) -> list[str]:
    """The options that differ from their defaults, as the command line would spell them (config.json's ``argv``)."""
    default = RunOptions()
    out = []
    for f in dataclasses.fields(RunOptions):
        value = getattr(options, f.name)
        if f.name == "cache_dir" or value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag)
        elif isinstance(value, list):
            out += [item for v in value for item in (flag, str(v))]
        else:
            out += [flag, str(value)]
    return out


# ---- what can run ---------------------------------------------------------------------------------------------------
def registries() -> pd.DataFrame:
    """One row per method, backbone, task (and task prefix) and profile: kind, name, description, the backbones a
    method runs on (its paper's first), and the package a plugin comes from ("" for the suite's own)."""
    from benchmark.backbones import BACKBONES, list_backbones
    from benchmark.methods import METHODS, get_method, list_methods
    from benchmark.profiles import PROFILE_HELP
    from tasks import get_task, list_tasks
    from tasks.base import TASKS, list_task_prefixes

    def package(registry, name: str) -> str:
        origin = registry.origin(name)
        return f"{origin.package} {origin.version}" if origin is not None else ""

    def first_line(obj) -> str:
        return ((obj.__doc__ or "").strip().splitlines() or [""])[0]

    rows = []
    for name in list_methods():
        cls = get_method(name)
        rows.append({"kind": "method", "name": name, "description": first_line(cls), "package": package(METHODS, name),
                     "backbones": ",".join([cls.default_backbone, *(b for b in cls.supported_backbones if b != cls.default_backbone)])})
    for name in list_backbones():
        rows.append({"kind": "backbone", "name": name, "description": first_line(BACKBONES.get(name)), "package": package(BACKBONES, name)})
    for name in list_tasks():
        task = get_task(name)
        rows.append({"kind": "task", "name": name, "description": f"[{task.kind}] {task.description}", "package": package(TASKS, name)})
    for prefix in list_task_prefixes():
        rows.append({"kind": "task", "name": prefix.usage, "description": f"[{prefix.kind}] {prefix.help}", "package": ""})
    for name, text in PROFILE_HELP.items():
        rows.append({"kind": "profile", "name": name, "description": text, "package": ""})
    return pd.DataFrame(rows, columns=["kind", "name", "description", "package", "backbones"]).fillna("")
