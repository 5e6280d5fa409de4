"""The planner: validated run inputs -> frozen, typed Jobs (``benchmark.job``), built once.

Cells that share a pretraining (method, backbone, task, seed, fold, hyperparameters) form one Job:
pretrained once, then fine-tuned at every label fraction (a label-aware method: one Job per
fraction). Splits are patient-wise and seeded; the test cases of a split are the same for every
method and fraction; label fractions are nested. n/a cells are Jobs with ``na_reason`` set.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import external as external_checkpoints
from benchmark.backbones import BACKBONES
from benchmark.datasources import TaskData
from benchmark.data import sample_dims
from benchmark.errors import BenchmarkInputError
from benchmark.job import CellSpec, CorpusPart, Job, PretrainSpec
from benchmark.kinds import NetworkPlanning, kind_of, resolve_finetune_loss, resolve_tta
from benchmark.methods import get_method
from benchmark.profiles import Profile
from benchmark.protocol import DEFAULT_PROTOCOL, Protocol
from benchmark import storage as storage_uri
from benchmark.prepared import case_key, case_locations
from benchmark.records import ExecutionSettings, FinetuneSettings
from benchmark.spatial_augmentation import ELASTIC_POLICIES, POLICIES, resolve_policy
from benchmark.store import content_hash
from tasks import Task
from tasks.nifti import nifti_shape


# ---- label fractions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Fraction:
    """A label budget: a percentage of the training cases ("25%") or a number of cases ("5")."""

    label: str
    percent: float | None = None
    count: int | None = None

    def n_labeled(self, n_train: int) -> int:
        if self.count is not None:
            if self.count > n_train:
                raise BenchmarkInputError(f"fraction {self.label!r} asks for {self.count} labelled cases but only {n_train} training cases exist")
            return self.count
        return max(1, int(math.floor(self.percent / 100.0 * n_train + 0.5)))


@dataclass(frozen=True)
class MethodEntry:
    """A method to run and the hyperparameters the user set for it (a variant and/or --hparam)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


# ---- splits ------------------------------------------------------------------------------------
def split_cases(case_ids: list[str], *, test_fraction: float, split_seed: int, strata: dict[str, int] | None = None) -> tuple[list[str], list[str]]:
    """Patient-wise (train, test) split; the same for every method and fraction of a seed.

    ``strata`` (case id -> class, classification tasks): the split is stratified, every class with
    at least two cases puts round(test_fraction · n) (>= 1) of them in the test set, so AUC is defined.
    """
    if strata:
        rng, train, test = np.random.default_rng(split_seed), [], []
        for cls in sorted(set(strata.values())):
            members = sorted(i for i in case_ids if strata[i] == cls)
            order = rng.permutation(len(members))
            n_test = max(1, int(round(test_fraction * len(members)))) if len(members) >= 2 else 0
            test += [members[i] for i in order[:n_test]]
            train += [members[i] for i in order[n_test:]]
        if not train or not test:
            raise BenchmarkInputError(f"only {len(case_ids)} case(s): need at least 2 to hold out a test case")
        return sorted(train), sorted(test)
    ids = sorted(case_ids)
    order = np.random.default_rng(split_seed).permutation(len(ids))
    n_test = max(1, int(round(test_fraction * len(ids))))
    if len(ids) - n_test < 1:
        raise BenchmarkInputError(f"only {len(ids)} case(s): need at least 2 to hold out a test case")
    test = sorted(ids[i] for i in order[:n_test])
    train = sorted(ids[i] for i in order[n_test:])
    return train, test


def kfold_splits(case_ids: list[str], *, folds: int, split_seed: int, strata: dict[str, int] | None = None) -> list[tuple[list[str], list[str]]]:
    """k-fold cross-validation, patient-wise: fold f tests on the f-th of k seeded, near-equal parts
    (``strata``: each class's cases dealt round-robin over the folds, so every fold holds every class)."""
    ids = sorted(case_ids)
    if not 2 <= folds <= len(ids):
        raise BenchmarkInputError(f"--folds {folds}: expected 2 <= folds <= the number of cases ({len(ids)})")
    rng = np.random.default_rng(split_seed)
    if strata:
        dealt = [i for cls in sorted(set(strata.values())) for i in rng.permutation([ids.index(c) for c in ids if strata[c] == cls])]
        parts = [dealt[f::folds] for f in range(folds)]
    else:
        parts = np.array_split(rng.permutation(len(ids)), folds)
    return [(sorted(ids[i] for j, p in enumerate(parts) if j != f for i in p), sorted(ids[i] for i in parts[f])) for f in range(folds)]


def task_splits(case_ids: list[str], *, seeds: list[int], folds: int, test_fraction: float, split_seed: int,
                strata: dict[str, int] | None = None) -> dict[tuple[int, int], tuple[list[str], list[str]]]:
    """(seed, fold) -> (train ids, test ids). Each seed is its own random split (the SI paper's "3 random
    splits"); seed 0 is the task's fixed hold-out split. ``folds`` > 1: k-fold cross-validation per seed."""
    out = {}
    for seed in seeds:
        if folds <= 1:
            out[(seed, 0)] = split_cases(case_ids, test_fraction=test_fraction, split_seed=split_seed + seed, strata=strata)
        else:
            splits = kfold_splits(case_ids, folds=folds, split_seed=split_seed + seed, strata=strata)
            out.update({(seed, f): split for f, split in enumerate(splits)})
    return out


def split_validation(train_ids: list[str], *, validation: float | int, seed: int, strata: dict[str, int] | None = None) -> tuple[list[str], list[str]]:
    """(fine-tuning ids, validation ids) of a split's training cases, patient-wise and seeded.

    ``validation``: a share (float) or a number of cases (int) from the task (``Task.validation``), capped at a
    third of the training cases and at least one, so fine-tuning keeps most cases; stratified by class when
    ``strata`` is given. The validation cases select the fine-tuning checkpoint and drive hyperparameter search;
    they are never labelled for fine-tuning and never seen by a label-aware pretraining.
    """
    n = len(train_ids)
    if n < 2:
        raise BenchmarkInputError(f"only {n} training case(s) in a split: need at least 2 to hold out a validation case")
    wanted = validation if isinstance(validation, int) else int(round(validation * n))
    n_val = max(1, min(wanted, n // 3)) if n >= 3 else 1
    return split_cases(train_ids, test_fraction=n_val / n, split_seed=seed, strata=strata)


def labeled_subset(train_ids: list[str], n: int, *, seed: int, protocol: Protocol = DEFAULT_PROTOCOL) -> list[str]:
    """The first n of a seeded permutation: smaller fractions are subsets of larger ones (nested)."""
    order = np.random.default_rng(protocol.labeled_subset_seed_offset + seed).permutation(len(train_ids))
    return sorted(train_ids[i] for i in order[:n])


# ---- the plan ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    jobs: tuple[Job, ...]
    profile: Profile

    def runnable(self) -> list[Job]:
        return [j for j in self.jobs if j.na_reason is None]


def build_plan(
    *,
    methods: list[MethodEntry],
    task_data: list[TaskData],
    fractions: list[Fraction],
    seeds: list[int],
    profile: Profile,
    cache_dir: Path,
    backbone: str | None = None,
    finetune: FinetuneSettings = FinetuneSettings(),
    folds: int = 1,
    protocol: Protocol | None = None,
    corpus: list[TaskData] | None = None,
    workers: int = 1,
    execution: ExecutionSettings = ExecutionSettings(),
    storage: str | None = None,
    pretrained: list["external_checkpoints.ResolvedCheckpoint"] = (),
) -> Plan:
    """Every Job of the run. ``methods``: scratch is added once per backbone that a runnable method uses
    (the fair-comparison baseline), or run alone when it is the only entry.

    ``corpus`` (``--pretrain-corpus``): tasks whose non-test cases (and ``--pretrain-extra`` cases) form ONE
    pretraining corpus for the methods that pretrain on single-modality samples tagged with their modality (DAE:
    its paper pretrains once on a curated CT + MRI set, then fine-tunes on each task). Such a method pretrains
    once per seed and fold on the corpus, and every task of the run fine-tunes that checkpoint. The test cases
    of every corpus task are excluded. ``workers``: DDP workers per Job (a batch-wise loss sees their global batch).
    ``execution``: how the loops run (``with_execution``). ``storage`` (``benchmark.storage``; default: ``cache_dir``):
    where the Jobs' prepared cases, pretraining and evaluation-network cache and checkpoints live; every Job names
    its cases' prepared folders there, so its worker needs no data folder. ``pretrained`` (``--pretrained``, read by
    ``benchmark.external.resolve``): rows fine-tuned from checkpoints made elsewhere, on their backbone, with scratch
    on that backbone beside them; their fit to every task's network is checked here (``benchmark.external.for_task``)."""
    protocol = protocol or profile.protocol
    storage = storage_uri.normalise(storage or cache_dir)
    volume_size = tuple(profile.volume_size) if profile.volume_size else None
    locations: dict[str, str] = {}
    for td in [*task_data, *(corpus or ())]:
        locations.update(case_locations(td.task, [*td.cases, *td.extra_cases], volume_size=volume_size))
    corpus_splits = _corpus_splits(corpus, seeds=seeds, folds=folds) if corpus else None
    if not 0.0 <= finetune.missing_series <= 1.0:
        raise BenchmarkInputError(f"--missing-series {finetune.missing_series}: expected a share of cases in [0, 1]")
    if finetune.augmentation == "mixup" and finetune.mixup_alpha is None:
        finetune = dataclasses.replace(finetune, mixup_alpha=protocol.mixup_alpha)
    # Downstream settings shared by every method of the run, in each cell id; absent keys keep older cell ids valid.
    downstream = {"finetune_aug": finetune.augmentation, **({"mixup_alpha": finetune.mixup_alpha} if finetune.augmentation == "mixup" else {}),
                  **({"missing_series": finetune.missing_series} if finetune.missing_series else {})}
    jobs: list[Job] = []
    for td in task_data:
        task = td.task
        # The fine-tuning augmentation this task gets (``--spatial-aug auto``: its paper's policy; ``profile``: the run
        # profile's choice), resolved in the Job.
        # Its key is absent when none is applied, so the cell ids of runs without augmentation stay valid.
        spatial = profile.spatial_aug(task.name) if finetune.spatial_aug == "profile" else finetune.spatial_aug
        task_finetune = dataclasses.replace(finetune, spatial_aug=resolve_policy(spatial, task))
        spatial_key = {"spatial_aug": task_finetune.spatial_aug} if task_finetune.spatial_aug != "none" else {}
        # Its fine-tuning loss and test-time augmentation (``auto``: its paper's, HIE: LADP eq. 7 and flips), resolved
        # likewise; in the cell id only when not the suite's default, so the other tasks' cell ids stay valid.
        try:
            task_finetune = dataclasses.replace(task_finetune, loss=resolve_finetune_loss(finetune.loss, task), tta=resolve_tta(finetune.tta, task))
        except ValueError as exc:
            raise BenchmarkInputError(str(exc)) from None
        spatial_key.update({**({"finetune_loss": task_finetune.loss} if task_finetune.loss != "default" else {}),
                            **({"tta": task_finetune.tta} if task_finetune.tta != "none" else {})})
        strata = kind_of(task).strata(td.cases)
        splits = task_splits([c.case_id for c in td.cases], seeds=seeds, folds=folds, test_fraction=task.test_fraction,
                             split_seed=task.split_seed, strata=strata)
        validation = {(seed, fold): split_validation(train, validation=task.validation, strata=strata,
                                                     seed=protocol.validation_seed_offset + task.split_seed + seed * 100 + fold)
                      for (seed, fold), (train, _) in splits.items()}
        n_train = min(len(train) for train, _ in splits.values())
        rows = [(entry, bb, None) for entry, bb in _entries_with_scratch(methods, task, backbone, finetune, also=[
            r.backbone for r in pretrained if external_unsupported(r.entry.name, task, r.backbone, finetune) is None])]
        rows += [(MethodEntry(r.entry.name), r.backbone, r) for r in pretrained]
        for entry, bb, checkpoint in rows:
            if checkpoint is not None:  # a checkpoint made elsewhere: fine-tuned as scratch is, from its weights
                jobs += _external_jobs(checkpoint, td, splits=splits, validation=validation, fractions=fractions, profile=profile,
                                       storage=storage, finetune=task_finetune, protocol=protocol, execution=execution, locations=locations,
                                       config_key={**downstream, **spatial_key}, n_folds=folds,
                                       na_reason=external_unsupported(entry.name, task, bb, finetune))
                continue
            method_cls = get_method(entry.name)
            try:
                cfg = method_cls.make_config(entry.overrides)
            except (TypeError, ValueError) as exc:
                raise BenchmarkInputError(f"settings for method {entry.name!r} {entry.overrides}: {exc}") from None
            on_corpus = corpus_splits is not None and uses_corpus(method_cls, cfg)
            modalities = corpus_modalities(corpus) if on_corpus else task.modalities
            na_reason = (_unsupported(method_cls, task, bb, finetune) or _backbone_conflict(method_cls, cfg, bb) or _data_shortfall(method_cls, cfg, n_train)
                         or _pretraining_data_problem(method_cls, cfg, task=task, corpus=corpus if on_corpus else None, modalities=modalities,
                                                      global_batch=profile.pretrain_recipe(method_cls, bb, cfg).batch_size * workers))
            config_id = content_hash({**dataclasses.asdict(cfg), **downstream, **spatial_key}, 8)
            for (seed, fold), (train_ids, test_ids) in splits.items():
                fit_ids, val_ids = validation[(seed, fold)]
                cells = _cells(entry.name, bb, task, fractions, fit_ids, seed=seed, fold=fold, config_id=config_id, protocol=protocol)
                # A label-aware pretraining may only see the labels of the fraction it is compared at,
                # so it is one pretraining per fraction; otherwise one pretraining serves every fraction.
                # (ddp:cases=labelled pretrains per fraction too, on the cases LADP sees: pretrains_on_labelled_cases.)
                per_fraction = method_cls.pretrains_on_labelled_cases(cfg)
                for share in ([[c] for c in cells] if per_fraction else [cells]):
                    # Label-aware pretraining sees only labelled cases; self-supervised ones every non-test case (validation
                    # cases included: no label is read) and the --pretrain-extra cases.
                    pretrain_ids = list(share[0].labeled_ids) if per_fraction else train_ids + [c.case_id for c in td.extra_cases]
                    parts = corpus_splits[(seed, fold)] if on_corpus else ()
                    jobs.append(_job(entry, method_cls, cfg, bb, td, seed=seed, fold=fold, n_folds=folds, train_ids=fit_ids, val_ids=val_ids, test_ids=test_ids,
                                     pretrain_ids=pretrain_ids, cells=tuple(share), profile=profile, storage=storage, finetune=task_finetune,
                                     protocol=protocol, na_reason=na_reason, corpus=parts, modalities=tuple(modalities) if on_corpus else (),
                                     execution=execution, locations=locations))
    return Plan(jobs=tuple(jobs), profile=profile)


def _cells(name: str, backbone: str, task: Task, fractions: list[Fraction], fit_ids: list[str], *, seed: int, fold: int, config_id: str,
           protocol: Protocol) -> list[CellSpec]:
    """The cells of one row on one split: one per label fraction, its labelled cases a nested subset of ``fit_ids``."""
    cells = []
    for fraction in fractions:
        n = fraction.n_labeled(len(fit_ids))
        cell_id = f"{name}|{backbone}|{task.name}|{fraction.label}|seed{seed}|fold{fold}|{config_id}"
        cells.append(CellSpec(cell_id, fraction.label, n, tuple(labeled_subset(fit_ids, n, seed=seed, protocol=protocol))))
    return cells


def _entries_with_scratch(methods: list[MethodEntry], task: Task, backbone: str | None, finetune: FinetuneSettings,
                          also: list[str] = ()) -> list[tuple[MethodEntry, str]]:
    """(entry, backbone) pairs of one task: every requested method on its paper backbone (or ``backbone``),
    then the kind's baseline (scratch; synthesis: l1) once per backbone that a runnable method uses, or that ``also``
    names (the backbones of the --pretrained rows that run on this task)."""
    baseline = kind_of(task).baseline_method
    pairs = [(e, backbone or _configured_backbone(e)) for e in methods if e.name != baseline]
    scratch = [e for e in methods if e.name == baseline] or [MethodEntry(baseline)]
    used = list(dict.fromkeys([*(bb for e, bb in pairs if _unsupported(get_method(e.name), task, bb, finetune) is None), *also]))
    if pairs or also or any(e.name == baseline for e in methods):
        for bb in used or [backbone or get_method(baseline).default_backbone]:
            pairs += [(s, bb) for s in scratch]
    return pairs


@dataclass(frozen=True)
class _ExternalRow:
    """What a task kind's ``unsupported_reason`` reads of a method class, for a --pretrained row (no method: no pretext,
    no labels read, not a synthesis loss)."""

    registry_name: str
    label_aware: bool = False
    synthesis_loss: bool = False


def external_unsupported(name: str, task: Task, backbone: str, finetune: FinetuneSettings) -> str | None:
    """Why the --pretrained row ``name`` cannot run on this task (its kind's rule, e.g. a 2D backbone on a classification
    task, or a synthesis task whose rows are generator losses), or None."""
    return kind_of(task).unsupported_reason(task, method_cls=_ExternalRow(name), backbone=backbone,
                                            spatial_dims=BACKBONES.get(backbone).spatial_dims, finetune=finetune)


def _external_jobs(checkpoint: "external_checkpoints.ResolvedCheckpoint", td: TaskData, *, splits, validation, fractions: list[Fraction],
                   profile: Profile, storage: str, finetune: FinetuneSettings, protocol: Protocol, execution: ExecutionSettings,
                   locations: dict[str, str], config_key: dict, n_folds: int, na_reason: str | None) -> list[Job]:
    """The Jobs of a --pretrained row on one task, one per split: no pretraining, fine-tuned exactly as scratch is (the
    no-pretext method's recipe and rounds) from the checkpoint's weights. Its cell ids hold the file's hash, so another
    file under the same name is other cells; its checkpoint's fit to this task's network is checked here."""
    name, bb = checkpoint.entry.name, checkpoint.backbone
    spec = None if na_reason else external_checkpoints.for_task(checkpoint, td.task, profile=profile)
    config_id = content_hash({"external": checkpoint.sha256, "encoder_only": checkpoint.encoder_only, **config_key}, 8)
    no_pretext = get_method("scratch")
    jobs = []
    for (seed, fold), (train_ids, test_ids) in splits.items():
        fit_ids, val_ids = validation[(seed, fold)]
        cells = _cells(name, bb, td.task, fractions, fit_ids, seed=seed, fold=fold, config_id=config_id, protocol=protocol)
        job = _job(MethodEntry(name), no_pretext, None, bb, td, seed=seed, fold=fold, n_folds=n_folds, train_ids=fit_ids, val_ids=val_ids,
                   test_ids=test_ids, pretrain_ids=[], cells=tuple(cells), profile=profile, storage=storage, finetune=finetune, protocol=protocol,
                   na_reason=na_reason, execution=execution, locations=locations)
        jobs.append(dataclasses.replace(job, external=spec))
    return jobs


def _configured_backbone(entry: MethodEntry) -> str:
    """The backbone a method entry runs on without --backbone: its configuration's (``backbone_for``, e.g. the loss
    network of l1+coper), else its paper's. A configuration that does not build is reported later by ``build_plan``."""
    method_cls = get_method(entry.name)
    try:
        return method_cls.backbone_for(method_cls.make_config(entry.overrides))
    except (TypeError, ValueError):
        return method_cls.default_backbone


def _backbone_conflict(method_cls, cfg, backbone: str) -> str | None:
    """A method whose Config names its backbone (``backbone_from_config``) cannot run on another one (an n/a cell)."""
    wanted = method_cls.backbone_for(cfg)
    if method_cls.backbone_from_config and backbone != wanted:
        return (f"{method_cls.registry_name}'s configuration names its backbone {wanted!r}; --backbone {backbone} asks for another "
                f"(expected the Config's backbone, e.g. --methods {method_cls.registry_name}:loss_backbone={backbone})")
    return None


def _unsupported(method_cls, task: Task, backbone: str, finetune: FinetuneSettings) -> str | None:
    """Why the method cannot run on this task / backbone: its own rule, or its task kind's."""
    return (method_cls.unsupported_reason(task=task, backbone=backbone)
            or kind_of(task).unsupported_reason(task, method_cls=method_cls, backbone=backbone,
                                            spatial_dims=BACKBONES.get(backbone).spatial_dims, finetune=finetune))


def _data_shortfall(method_cls, cfg, n_train: int) -> str | None:
    """A reason if the task has too few training cases for the method's sampling (e.g. CSI's N patients)."""
    spec = method_cls.data_spec(cfg)
    if spec.kind == "source_pool" and not spec.same_patient and n_train < spec.pool_size:
        return f"{method_cls.registry_name} draws N = {spec.pool_size} sources from different patients but only {n_train} training cases exist"
    return None


def uses_corpus(method_cls, cfg) -> bool:
    """Whether the method pretrains on a shared corpus when one is given: its samples are single-modality crops
    tagged with their modality (``DataSpec(kind="modality_crops")``), so volumes of any task, with any number of
    channels, mix in one batch; a label-aware pretraining never does (it may see only one task's labelled cases)."""
    return not method_cls.pretrains_on_labelled_cases(cfg) and method_cls.data_spec(cfg).kind == "modality_crops"


def corpus_modalities(corpus: list[TaskData]) -> list[str]:
    """The corpus's modality vocabulary: every task's ``Task.modalities``, in order of first appearance."""
    return list(dict.fromkeys(m for td in corpus for m in td.task.modalities))


def _corpus_splits(corpus: list[TaskData], *, seeds: list[int], folds: int) -> dict[tuple[int, int], tuple[CorpusPart, ...]]:
    """(seed, fold) -> the corpus parts: each task's non-test cases of that split (validation cases included: no label
    is read) plus its --pretrain-extra cases. A task's split is the one its own Jobs use, so no test case of any
    corpus task is ever pretrained on."""
    out: dict[tuple[int, int], list[CorpusPart]] = {}
    for td in corpus:
        splits = task_splits([c.case_id for c in td.cases], seeds=seeds, folds=folds, test_fraction=td.task.test_fraction,
                             split_seed=td.task.split_seed, strata=kind_of(td.task).strata(td.cases))
        for key, (train, _test) in splits.items():
            extra = [c.case_id for c in td.extra_cases]
            out.setdefault(key, []).append(CorpusPart(task_ref=td.task.ref, data_root=str(td.root), case_ids=tuple(train + extra),
                                                      extra_root=str(td.extra_root) if extra else None,
                                                      fingerprint=td.fingerprint))
    return {key: tuple(parts) for key, parts in out.items()}


def _pretraining_data_problem(method_cls, cfg, *, task: Task, corpus: list[TaskData] | None, modalities: list[str] | tuple[str, ...],
                              global_batch: int) -> str | None:
    """The method's own check of its pretraining data (e.g. DAE's contrastive loss needs two modalities and a
    global batch that can hold a positive and a negative pair), phrased with where the data comes from."""
    problem = method_cls.pretraining_data_problem(cfg, modalities=tuple(modalities), global_batch=global_batch)
    if problem is None:
        return None
    source = f"the corpus {', '.join(td.task.name for td in corpus)}" if corpus else f"task {task.name}"
    return f"{problem} (pretraining data: {source}; modalities {list(modalities)}; global batch {global_batch})"


# Recipe fields added after the first cached checkpoints: left out of the key while unset, so the checkpoints
# of every recipe that does not use them stay valid.
_RECIPE_FIELDS_SINCE_V1 = ("final_lr", "warmup_epochs")


def _recipe_key(recipe) -> dict:
    return {k: v for k, v in dataclasses.asdict(recipe).items() if not (k in _RECIPE_FIELDS_SINCE_V1 and v is None)}


def _epoch_size(td: TaskData, ids: list[str], *, two_d: bool, volume_size) -> int:
    """Samples in one epoch: volumes for 3D networks, axial slices (read from the headers) for 2D ones."""
    if not two_d:
        return len(ids)
    if volume_size:
        return len(ids) * volume_size[2]
    cases = {c.case_id: c for c in [*td.cases, *td.extra_cases]}
    return sum(nifti_shape(cases[i].images[0])[2] for i in ids)


def _job(entry: MethodEntry, method_cls, cfg, backbone: str, td: TaskData, *, seed: int, fold: int, n_folds: int, train_ids, val_ids, test_ids,
         pretrain_ids, cells: tuple[CellSpec, ...], profile: Profile, storage: str, finetune: FinetuneSettings, protocol: Protocol,
         na_reason: str | None, corpus: tuple[CorpusPart, ...] = (), modalities: tuple[str, ...] = (),
         execution: ExecutionSettings = ExecutionSettings(), locations: dict[str, str] | None = None) -> Job:
    network = kind_of(td.task).finetune_network(backbone)  # synthesis: the generator's crop and recipe, whatever the loss network
    roi = tuple(profile.rois[network])
    ft_recipe = profile.finetune_recipe(network, td.task.name)
    common = dict(
        method=entry.name, method_config=cfg, method_overrides=dict(entry.overrides), backbone=backbone, backbone_size=profile.backbone_size,
        task_ref=td.task.ref, task=td.task.name, data_root=str(td.root), seed=seed, fold=fold, n_folds=n_folds,
        label_aware=method_cls.is_label_aware(cfg), train_ids=tuple(train_ids), val_ids=tuple(val_ids), test_ids=tuple(test_ids), roi=roi,
        in_channels=len(td.task.channels),
        volume_size=tuple(profile.volume_size) if profile.volume_size else None, finetune_recipe=ft_recipe, finetune=finetune,
        protocol=protocol, cells=cells, prepared_dir=storage_uri.join(storage, "prepared"), checkpoint_dir=storage_uri.join(storage, "checkpoints"),
        prepared_cases=_job_locations(locations or {}, td, [*train_ids, *val_ids, *test_ids, *pretrain_ids], corpus),
    )
    if na_reason is not None:
        return Job(**common, pretrain_channels=(0, 0), pretrain=None, finetune_steps=0, finetune_rounds=1, validation_every=1, na_reason=na_reason)
    channels = method_cls.backbone_channels(cfg, in_channels=len(td.task.channels))
    pre_recipe = profile.pretrain_recipe(method_cls, backbone, cfg)
    two_d = len(roi) == 2
    samples = _epoch_size(td, [*train_ids, *val_ids], two_d=two_d, volume_size=profile.volume_size)  # every non-test case
    extra = [i for i in pretrain_ids if i not in {*train_ids, *val_ids}]  # --pretrain-extra cases: epochs count them too
    pretrain = None
    aug_policy, aug_key = _pretrain_augmentation(method_cls, cfg, roi=roi, protocol=protocol)
    if method_cls.pretrains_with(cfg) and corpus:
        pretrain = _corpus_pretraining(entry, cfg, backbone, pre_recipe, corpus=corpus, modalities=modalities, seed=seed, roi=roi,
                                       channels=channels, profile=profile, storage=storage, augmentation=(aug_policy, aug_key))
    elif method_cls.pretrains_with(cfg):
        pretrain_samples = samples + (_epoch_size(td, extra, two_d=two_d, volume_size=profile.volume_size) if extra else 0)
        steps = pre_recipe.steps_for(pretrain_samples)
        key = content_hash({
            "method": entry.name, "backbone": backbone, "task": td.task.name, "seed": seed,
            "config": method_cls.pretraining_config(cfg), "recipe": _recipe_key(pre_recipe), "steps": steps, "roi": roi,
            "channels": channels, "volume_size": profile.volume_size, "backbone_size": dataclasses.asdict(profile.backbone_size),
            "pretrain_ids": pretrain_ids, "data": td.fingerprint, "version": 1,
            # crop sampling by labels (a label-aware method's, e.g. LADP's foreground_prob, is also in its config)
            **({"foreground_prob": fg} if (fg := method_cls.pretrain_foreground_prob(cfg)) else {}),
            **kind_of(td.task).pretrain_key(td.task),  # e.g. synthesis: the target series pretrained on
            **aug_key,  # the samples' augmentation (its paper's), absent for none
        })
        pretrain = PretrainSpec(recipe=pre_recipe, steps=steps, case_ids=tuple(pretrain_ids), key=key,
                                path=storage_uri.join(storage, "pretrained", f"{key}.pt"),
                                extra_root=str(td.extra_root) if td.extra_root and extra else None, samples=pretrain_samples,
                                augmentation=aug_policy)
    # Every label fraction gets the same optimisation budget (steps), counted on the full training
    # set: small fractions are not also penalised with fewer updates.
    steps = ft_recipe.steps_for(samples)
    # The networks the task's kind scores with (synthesis: the CoPer network and the real-image segmenter), planned here
    # so the worker trains them like a pretraining and the evaluation only loads them.
    networks = kind_of(td.task).planned_networks(td.task, plan=NetworkPlanning(
        profile=profile, storage=storage, seed=seed, train_ids=tuple(train_ids), val_ids=tuple(val_ids), data_fingerprint=td.fingerprint,
        epoch_slices=_epoch_size(td, [*train_ids, *val_ids], two_d=True, volume_size=profile.volume_size), finetune_samples=samples,
        protocol=protocol))
    job = Job(**common, pretrain_channels=tuple(channels), pretrain=pretrain, finetune_steps=steps, finetune_samples=samples, networks=networks,
              finetune_rounds=method_cls.finetune_rounds(cfg), validation_every=max(1, steps // protocol.validations_per_finetune))
    return with_execution(job, execution)


def _job_locations(locations: dict[str, str], td: TaskData, case_ids: list[str], corpus: tuple[CorpusPart, ...]) -> dict[str, str]:
    """The prepared folders of the cases a Job reads: its task's, and its pretraining corpus's."""
    keys = [case_key(td.task.ref, i) for i in case_ids]
    keys += [case_key(part.task_ref, i) for part in corpus for i in part.case_ids]
    return {k: locations[k] for k in keys if k in locations}


def with_execution(job: Job, execution: ExecutionSettings) -> Job:
    """``job`` run with ``execution``: what changes the numbers changes the keys (a precision other than fp32, a
    step cap), so a bf16 or a capped (dry-run) pretraining, evaluation network or cell is never taken for the fp32,
    full-length one, in the cache or on resume; the keys of a default run stay those of older runs.

    ``max_steps`` caps every training stage (pretraining, fine-tuning, the evaluation networks); data, crop sizes,
    validation (always at a stage's last step) and the test evaluation stay as planned."""
    key_extra = {**execution.numeric_key(), **({"max_steps": execution.max_steps} if execution.max_steps else {})}
    job = dataclasses.replace(job, execution=execution)
    if not key_extra or job.na_reason:
        return job
    cap = execution.max_steps or float("inf")

    def rekeyed(spec):
        key = content_hash({"base": spec.key, **key_extra})
        return dataclasses.replace(spec, steps=int(min(spec.steps, cap)), key=key, path=storage_uri.sibling(spec.path, f"{key}.pt"))

    cells = tuple(dataclasses.replace(c, cell_id=f"{c.cell_id.rsplit('|', 1)[0]}|{content_hash({'base': c.cell_id.rsplit('|', 1)[-1], **key_extra}, 8)}")
                  for c in job.cells)
    return dataclasses.replace(job, pretrain=rekeyed(job.pretrain) if job.pretrain else None, networks=tuple(rekeyed(n) for n in job.networks),
                               finetune_steps=int(min(job.finetune_steps, cap)), cells=cells)


def _pretrain_augmentation(method_cls, cfg, *, roi, protocol: Protocol) -> tuple[str, dict]:
    """(policy, cache-key entries) of a pretraining's sample augmentation (``PretextTask.pretrain_augmentation``: its
    paper's). The key holds the policy and whether its elastic part runs (``Protocol.pretrain_aug_elastic_dims``) and
    nothing for "none", so the keys of pretrainings without augmentation stay those of older runs."""
    policy = method_cls.pretrain_augmentation(cfg)
    if policy not in POLICIES:
        raise ValueError(f"{method_cls.registry_name}: pretraining augmentation {policy!r}; expected one of {', '.join(POLICIES)}")
    if policy == "none":
        return policy, {}
    dims = sample_dims(method_cls.data_spec(cfg).kind, roi)
    elastic = {"pretrain_aug_elastic": dims in protocol.pretrain_aug_elastic_dims} if policy in ELASTIC_POLICIES else {}
    return policy, {"pretrain_aug": policy, **elastic}


def _corpus_pretraining(entry: MethodEntry, cfg, backbone: str, recipe, *, corpus: tuple[CorpusPart, ...], modalities: tuple[str, ...], seed: int,
                        roi, channels, profile: Profile, storage: str, augmentation: tuple[str, dict] = ("none", {})) -> PretrainSpec:
    """The pretraining on a shared corpus: its key names the corpus (tasks, data fingerprints via the case ids and
    roots, extras) and not the fine-tuning task, so every task of the run reuses one checkpoint."""
    # One sample per volume and epoch: the corpus methods (DAE) are 3D (a 2D one would count slices, as _epoch_size does).
    samples = sum(len(p.case_ids) for p in corpus)
    steps = recipe.steps_for(samples)
    key = content_hash({
        "method": entry.name, "backbone": backbone, "seed": seed, "config": dataclasses.asdict(cfg), "recipe": _recipe_key(recipe),
        "steps": steps, "roi": roi, "channels": channels, "volume_size": profile.volume_size,
        "backbone_size": dataclasses.asdict(profile.backbone_size), "modalities": list(modalities),
        "corpus": [dataclasses.asdict(p) for p in corpus], "version": 1, **augmentation[1],
    })
    return PretrainSpec(recipe=recipe, steps=steps, case_ids=(), key=key, path=storage_uri.join(storage, "pretrained", f"{key}.pt"), samples=samples,
                        corpus=corpus, modalities=modalities, augmentation=augmentation[0])


# ---- searched hyperparameters -------------------------------------------------------------------
PRETRAIN_PREFIX, FINETUNE_PREFIX = "pretrain_", "finetune_"  # search-space keys that set a Recipe, not the Config


def apply_params(job: Job, params: dict[str, Any], *, search_budget: int = 0) -> Job:
    """``job`` with searched hyperparameters (``search_spaces``): method Config keys, ``pretrain_<recipe field>``
    and ``finetune_<recipe field>`` (e.g. finetune_lr). The pretraining cache key is the pretext configuration:
    trials that differ only in fine-tuning keys share one pretraining. Cell ids get the parameters' hash, so tuned
    cells never collide with default ones; the user's own overrides (the row label) are kept apart from them."""
    if not params:
        return dataclasses.replace(job, search_budget=search_budget)
    pretext = {k: v for k, v in params.items() if not k.startswith((PRETRAIN_PREFIX, FINETUNE_PREFIX))}
    pre = {k[len(PRETRAIN_PREFIX):]: v for k, v in params.items() if k.startswith(PRETRAIN_PREFIX)}
    fine = {k[len(FINETUNE_PREFIX):]: v for k, v in params.items() if k.startswith(FINETUNE_PREFIX)}
    method_cls = get_method(job.method) if job.external is None else get_method("scratch")  # a --pretrained row: no pretext
    try:
        cfg = method_cls.make_config({**job.method_overrides, **pretext})
        pre_recipe = dataclasses.replace(job.pretrain.recipe, **pre) if job.pretrain else None
        ft_recipe = dataclasses.replace(job.finetune_recipe, **fine)
    except (TypeError, ValueError) as exc:
        raise BenchmarkInputError(f"searched hyperparameters {params} for {job.method!r}: {exc}") from None
    pretrain = job.pretrain
    pretext = {k: v for k, v in pretext.items() if k in method_cls.pretraining_config(cfg)}  # e.g. not a loss weight (λ1)
    if pretrain is not None and (pretext or pre):
        steps = pre_recipe.steps_for(pretrain.samples)
        key = content_hash({"base": pretrain.key, "pretext": pretext, "recipe": _recipe_key(pre_recipe), "steps": steps})
        pretrain = dataclasses.replace(pretrain, recipe=pre_recipe, steps=steps, key=key, path=storage_uri.sibling(pretrain.path, f"{key}.pt"))
    ft_steps = ft_recipe.steps_for(job.finetune_samples) if ft_recipe.steps is None else ft_recipe.steps
    config_id = content_hash({"base": job.cells[0].cell_id.rsplit("|", 1)[-1], "tuned": params}, 8)
    cells = tuple(dataclasses.replace(c, cell_id=f"{c.cell_id.rsplit('|', 1)[0]}|{config_id}") for c in job.cells)
    channels = tuple(method_cls.backbone_channels(cfg, in_channels=job.in_channels))  # e.g. CSI: C x M̃ inputs
    tuned = dataclasses.replace(job, method_config=cfg if job.external is None else None, pretrain=pretrain, pretrain_channels=channels, finetune_recipe=ft_recipe, finetune_steps=ft_steps,
                                validation_every=max(1, ft_steps // job.protocol.validations_per_finetune), cells=cells,
                                tuned_params=dict(params), search_budget=search_budget)
    return with_execution(tuned, job.execution)
