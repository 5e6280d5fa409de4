"""A Job: the frozen, typed description of one unit of work, from planner to worker.

One Job = one pretraining (or none) + the fine-tuning and evaluation of its cells (one per label
fraction; one cell for a label-aware pretraining, which may only see that fraction's labels). The
planner (``benchmark.plan``) builds every Job once, with everything resolved: the method's config
object, recipes, step counts, crop size, split case ids, the pretraining cache key and path, the
fine-tuning settings and the protocol constants. It crosses process boundaries as JSON
(``to_json`` / ``from_json``); the worker (``benchmark.train.run_job``) reads its fields and never
re-parses arguments or rebuilds configuration. Resuming a run selects cells (``with_cells``); it
never edits a Job.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from benchmark.backbones import BackboneSize
from benchmark.backbones.transfer import TransferReport
from benchmark.methods import Recipe, get_method
from benchmark.protocol import Protocol
from benchmark.records import ExecutionSettings, FinetuneSettings, MetricRow


@dataclass(frozen=True)
class CellSpec:
    """One cell: a label fraction of one split, its labelled cases and its stable id."""

    cell_id: str
    fraction: str
    n_labeled: int
    labeled_ids: tuple[str, ...]


@dataclass(frozen=True)
class CellResult:
    """What the worker returns for one cell; ``benchmark.store`` turns it into result rows and a cell record."""

    cell_id: str
    rows: tuple[MetricRow, ...]
    finetune_seconds: float
    pretrain_seconds: float
    pretrain_reused: bool
    final_finetune_loss: float
    curve: tuple[tuple[int, str, float], ...] = ()  # (fine-tuning step, metric, value): validation score and loss
    selected_step: int | None = None  # the validation-selected checkpoint's step (None: no validation case)
    validation_score: float | None = None
    step_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # stage -> measured seconds per optimiser step
    # stage -> wall seconds: training loops (pretrain and network ones are the Job's, shared by its cells; 0 when cached),
    # this cell's finetune (steps only), validation (model selection) and test evaluation
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    # stage -> the step its training continued from after an interruption (its checkpoint); absent: from step 0
    resumed_from: dict[str, int] = dataclasses.field(default_factory=dict)
    node: str = ""  # the Ray node the Job ran on (its rank 0 under DDP); "" outside Ray
    # the Job's pretraining's pretext loss (initial, final): means of its first and last tenth of steps (None: no pretraining)
    pretrain_loss: tuple[float, float] | None = None


@dataclass(frozen=True)
class CorpusPart:
    """One task's share of a pretraining corpus (``--pretrain-corpus``): its non-test cases of the Job's split,
    plus its ``--pretrain-extra`` cases, read by that task's own reader and normalisation."""

    task_ref: str
    data_root: str
    case_ids: tuple[str, ...]
    extra_root: str | None = None
    fingerprint: str = ""  # the task data's fingerprint: the corpus's cache key changes when its files do


@dataclass(frozen=True)
class PretrainSpec:
    """The pretraining of a Job: its cases (label-aware: only the labelled ones), recipe, steps and cache key."""

    recipe: Recipe
    steps: int
    case_ids: tuple[str, ...]
    key: str
    path: str  # where the pretrained backbone is cached (shared storage on a cluster)
    extra_root: str | None = None  # --pretrain-extra folder whose cases are among case_ids
    samples: int = 0  # samples per epoch (recipes counted in epochs convert with it when a search changes the batch size)
    # A shared corpus of several tasks (DAE's curated CT + MRI set): when set, the pretraining reads these parts
    # instead of ``case_ids`` of the Job's task, and every sample's modality is its index in ``modalities``.
    corpus: tuple[CorpusPart, ...] = ()
    modalities: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalCheckpoint:
    """A checkpoint made elsewhere that a Job's cells fine-tune from instead of a pretraining (``--pretrained NAME=PATH``):
    the leaderboard row ``name`` on the Job's backbone, trained as scratch is from the checkpoint's weights. The planner
    read it once (its hash, how its keys map onto the backbone, what transfers to this task's network); the worker
    checks the hash and loads it the same way (``benchmark.backbones.transfer.read_external`` / ``external_model``)."""

    name: str  # the row (the Job's method column)
    source: str  # the location the user gave (a path or a storage URI)
    path: str  # where the workers read it: ``source``, or its copy on a remote --storage (``external/<sha256>.pt``)
    sha256: str  # of the file: the cells' pretrain_hash
    layout: str  # how its state dict was found and its keys mapped
    transfer: TransferReport  # tensors loaded / missing / unexpected / replaced for this task's network
    encoder_only: bool = False  # a file of this suite's cache pretrained by an encoder-only method: only its encoder transfers


@dataclass(frozen=True)
class NetworkSpec:
    """A network a kind's evaluation needs beside the compared one (synthesis: the CoPer scoring network and the
    real-image segmenter), planned with its Job like a pretraining: keyed, cached at ``path``, trained by the loops
    before the cells (its time counted as pretraining, nothing reported into the trial's metric stream) and only
    loaded by the evaluation. ``stage``: "pretrain" (the registered pretext ``method`` on ``task_ref``'s pretraining
    volumes) or "finetune" (supervised on ``task_ref``'s training cases, selected on its validation cases)."""

    role: str  # the name the kind reads it by, e.g. "coper_metric", "segmenter"
    stage: str  # pretrain | finetune
    method: str  # pretrain: the registered pretext method (e.g. swav); finetune: ""
    backbone: str
    task_ref: str  # the task whose volumes it trains on (get_task rebuilds it)
    channels: tuple[int, int]  # (input, output) channels of the backbone
    recipe: Recipe
    steps: int
    roi: tuple[int, ...]
    key: str
    path: str  # where the trained network is cached (shared storage on a cluster)
    seed: int | None = None  # its initialisation and sampling seed (None: the Job's)
    case_ids: tuple[str, ...] | None = None  # the split's non-test cases it trains on (None: all of them)


@dataclass(frozen=True)
class Job:
    method: str
    method_config: Any  # the method's frozen Config dataclass, paper defaults + overrides, resolved
    method_overrides: dict[str, Any]  # what the user set (variant / --hparam): labels the leaderboard row
    backbone: str
    backbone_size: BackboneSize
    task_ref: str  # what tasks.get_task rebuilds the task from (a name, or nnunet:/abs/path)
    task: str  # the task's display name
    data_root: str
    seed: int
    fold: int
    n_folds: int
    label_aware: bool
    train_ids: tuple[str, ...]  # the fine-tuning pool: every cell labels a nested subset of these
    val_ids: tuple[str, ...]  # model selection and hyperparameter search only; never labelled for fine-tuning
    test_ids: tuple[str, ...]  # evaluated once per cell, with the validation-selected checkpoint
    roi: tuple[int, ...]
    volume_size: tuple[int, int, int] | None
    pretrain_channels: tuple[int, int]  # backbone (input, output) channels during pretraining
    pretrain: PretrainSpec | None  # None: no pretext task (scratch, restart)
    finetune_recipe: Recipe
    finetune_steps: int
    finetune_rounds: int  # > 1: CNN-restart, a fresh optimiser and schedule per round
    validation_every: int  # fine-tuning steps between validation evaluations (and the last step)
    finetune: FinetuneSettings
    protocol: Protocol
    cells: tuple[CellSpec, ...]
    na_reason: str | None = None  # set: the cells are reported n/a with this reason, nothing runs
    finetune_samples: int = 0  # samples per fine-tuning epoch (see PretrainSpec.samples)
    in_channels: int = 0  # the task's input channels (a searched Config may change the pretraining network's channels)
    tuned_params: dict[str, Any] = dataclasses.field(default_factory=dict)  # chosen by a search (benchmark.plan.apply_params)
    search_budget: int = 0  # trials of that search; 0: paper defaults
    networks: tuple[NetworkSpec, ...] = ()  # the kind's evaluation networks (planned, trained before the cells)
    execution: ExecutionSettings = ExecutionSettings()  # precision, compile, loader workers, step cap (recorded per cell)
    prepared_dir: str | None = None  # the prepared, memory-mapped cases (benchmark.prepared); None: decode the files in memory
    checkpoint_dir: str | None = None  # where the training stages keep their checkpoints (benchmark.checkpoints); None: none
    # "<task ref>|<case id>" -> its folder under prepared_dir (benchmark.prepared.case_locations): a worker reads its cases
    # from there without seeing the data folders (a storage URI on a cluster)
    prepared_cases: dict[str, str] = dataclasses.field(default_factory=dict)
    # set: the cells fine-tune from this external checkpoint (``method`` is its row name, no pretraining, no method config)
    external: ExternalCheckpoint | None = None

    @property
    def title(self) -> str:
        fold = f" fold {self.fold}" if self.n_folds > 1 else ""
        return f"{self.method}/{self.backbone} on {self.task} seed {self.seed}{fold}"

    @property
    def name(self) -> str:
        """A short unique name (Ray run names, logs)."""
        key = self.pretrain.key[:8] if self.pretrain else self.external.sha256[:8] if self.external else "scratch"
        return f"{self.method}-{self.backbone}-{self.task}-s{self.seed}-f{self.fold}-{key}-{self.cells[0].cell_id[-8:]}"

    def with_cells(self, cell_ids: set[str]) -> "Job":
        """The same Job restricted to ``cell_ids`` (resume: the finished cells are not run again)."""
        return dataclasses.replace(self, cells=tuple(c for c in self.cells if c.cell_id in cell_ids))

    # ---- JSON ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        config_cls = None if data.get("external") else get_method(data["method"]).Config  # an external row has no method
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:  # a field with a default, absent from an older Job's JSON
                continue
            raw = data[f.name]
            values[f.name] = _build(config_cls, raw) if f.name == "method_config" else _build(_hints(cls)[f.name], raw)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "Job":
        return cls.from_dict(json.loads(text))


def _plain(value: Any) -> Any:
    """A JSON-ready copy: dataclasses -> dicts, tuples -> lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _hints(cls: type) -> dict[str, Any]:
    import benchmark.job as this_module

    return typing.get_type_hints(cls, globalns=vars(this_module))


def _build(hint: Any, raw: Any) -> Any:
    """Inverse of ``_plain`` for the annotated type ``hint`` (dataclasses, tuples, optionals)."""
    if raw is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _build(options[0], raw) if len(options) == 1 else raw
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint) if hint.__module__ == __name__ else typing.get_type_hints(hint)
        return hint(**{f.name: _build(hints.get(f.name, Any), raw[f.name]) for f in dataclasses.fields(hint) if f.name in raw})
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
            return tuple(_build(args[0], r) for r in raw)
        return tuple(_build(a, r) for a, r in zip(args, raw)) if args else tuple(raw)
    return tuple(raw) if hint is tuple else raw
