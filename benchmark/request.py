"""What a run is asked to do, validated: the ``RunRequest`` that ``benchmark.cli`` builds and ``benchmark.run`` runs.

Plain frozen values of the run layer; the command line (``benchmark.cli``) and a script or notebook can both
build one, and nothing here parses arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.records import ExecutionSettings, FinetuneSettings

if TYPE_CHECKING:  # annotations only: building a request (the command line's --help) stays torch-free
    from benchmark.external import PretrainedEntry
    from benchmark.plan import Fraction, MethodEntry
    from benchmark.profiles import Profile
    from tasks import Task


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    num_workers: int = 1
    gpus_per_worker: float | None = None  # None: one per worker when the cluster has GPUs (benchmark.run says so), else 0
    cpus_per_worker: float | None = None
    concurrency: int | None = None
    dashboard: bool = True
    max_failures: int = 2  # retries of a Job whose worker died (it continues from its checkpoints)


@dataclass(frozen=True)
class ReportOptions:
    test: str = "ttest"
    holm: bool = True  # Holm per report table (--no-holm: uncorrected)
    publish: Path | None = None
    paper_datasets: tuple[tuple[str, str], ...] = ()  # (task, a paper's in-house cohort the user says the data is)


@dataclass(frozen=True)
class SearchOptions:
    trials: int = 0  # 0: no search, paper defaults
    fraction: str | None = None  # label of the fraction the trials fine-tune at (None: the smallest requested)
    finetune_lr: bool = False
    finetune_batch_size: bool = False
    max_concurrent: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs, validated: what ``benchmark.run.execute`` runs."""

    methods: tuple[MethodEntry, ...]
    tasks: tuple[Task, ...]  # in command-line order
    fractions: tuple[Fraction, ...]
    seeds: tuple[int, ...]
    folds: int
    profile: Profile
    data_roots: dict[str, Path]
    extra_roots: dict[str, Path]
    backbone: str | None
    finetune: FinetuneSettings
    run_name: str
    output: Path
    cache_dir: Path
    check_data: bool
    ray: RayOptions
    report: ReportOptions
    search: SearchOptions = SearchOptions()
    argv: tuple[str, ...] = ()
    pretrain_corpus: tuple[Task, ...] | None = None  # --pretrain-corpus (None: each task pretrains on its own)
    execution: ExecutionSettings = ExecutionSettings()  # precision, compile, loader workers, step cap (--max-steps)
    prepare_only: bool = False  # --prepare: prepare the cases into the cache, then stop
    prepare_workers: int | None = None  # processes preparing cases (None: this machine's CPUs)
    confirmed: bool = False  # --yes: start a paper-profile run whose estimate exceeds an hour without GPUs
    verbose: bool = False  # --verbose: Ray's, Tune's and the workers' own output on the console too (always in logs/run.log)
    storage: str | None = None  # --storage: what workers write and others read (benchmark.storage); None: the cache folder
    pretrained: tuple[PretrainedEntry, ...] = ()  # --pretrained: rows fine-tuned from external checkpoints

    @property
    def storage_root(self) -> str:
        """Where the prepared cases, the pretraining cache and the checkpoints live (``--storage``, else the cache)."""
        return self.storage or str(self.cache_dir)

