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

from benchmark.backbones import BACKBONES
from benchmark.errors import BenchmarkInputError
from benchmark.job import CellSpec, Job, PretrainSpec
from benchmark.methods import get_method
from benchmark.profiles import Profile
from benchmark.protocol import DEFAULT_PROTOCOL, Protocol
from benchmark.store import content_hash, pretrain_checkpoint_path
from tasks import Case, Task
from tasks.kinds import FinetuneSettings


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
@dataclass
class TaskData:
    """A task with its resolved data folder and cases (real or synthetic)."""

    task: Task
    root: Path
    cases: list[Case]
    synthetic: bool
    fingerprint: str
    extra_root: Path | None = None  # --pretrain-extra: unlabeled cases for pretraining only
    extra_cases: list[Case] = field(default_factory=list)


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
) -> Plan:
    """Every Job of the run. ``methods``: scratch is added once per backbone that a runnable method uses
    (the fair-comparison baseline), or run alone when it is the only entry."""
    protocol = protocol or profile.protocol
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
        strata = task.kind.strata(td.cases)
        splits = task_splits([c.case_id for c in td.cases], seeds=seeds, folds=folds, test_fraction=task.test_fraction,
                             split_seed=task.split_seed, strata=strata)
        validation = {(seed, fold): split_validation(train, validation=task.validation, strata=strata,
                                                     seed=protocol.validation_seed_offset + task.split_seed + seed * 100 + fold)
                      for (seed, fold), (train, _) in splits.items()}
        n_train = min(len(train) for train, _ in splits.values())
        for entry, bb in _entries_with_scratch(methods, task, backbone, finetune):
            method_cls = get_method(entry.name)
            try:
                cfg = method_cls.make_config(entry.overrides)
            except (TypeError, ValueError) as exc:
                raise BenchmarkInputError(f"settings for method {entry.name!r} {entry.overrides}: {exc}") from None
            na_reason = _unsupported(method_cls, task, bb, finetune) or _data_shortfall(method_cls, cfg, n_train)
            config_id = content_hash({**dataclasses.asdict(cfg), **downstream}, 8)
            for (seed, fold), (train_ids, test_ids) in splits.items():
                fit_ids, val_ids = validation[(seed, fold)]
                cells = []
                for fraction in fractions:
                    n = fraction.n_labeled(len(fit_ids))
                    cell_id = f"{entry.name}|{bb}|{task.name}|{fraction.label}|seed{seed}|fold{fold}|{config_id}"
                    cells.append(CellSpec(cell_id, fraction.label, n, tuple(labeled_subset(fit_ids, n, seed=seed, protocol=protocol))))
                # A label-aware pretraining may only see the labels of the fraction it is compared at,
                # so it is one pretraining per fraction; otherwise one pretraining serves every fraction.
                for share in ([[c] for c in cells] if method_cls.label_aware else [cells]):
                    # Label-aware pretraining sees only labelled cases; self-supervised ones every non-test case (validation
                    # cases included: no label is read) and the --pretrain-extra cases.
                    pretrain_ids = list(share[0].labeled_ids) if method_cls.label_aware else train_ids + [c.case_id for c in td.extra_cases]
                    jobs.append(_job(entry, method_cls, cfg, bb, td, seed=seed, fold=fold, n_folds=folds, train_ids=fit_ids, val_ids=val_ids, test_ids=test_ids,
                                     pretrain_ids=pretrain_ids, cells=tuple(share), profile=profile, cache_dir=cache_dir, finetune=finetune,
                                     protocol=protocol, na_reason=na_reason))
    return Plan(jobs=tuple(jobs), profile=profile)


def _entries_with_scratch(methods: list[MethodEntry], task: Task, backbone: str | None, finetune: FinetuneSettings) -> list[tuple[MethodEntry, str]]:
    """(entry, backbone) pairs of one task: every requested method on its paper backbone (or ``backbone``),
    then scratch once per backbone that a runnable method uses."""
    pairs = [(e, backbone or get_method(e.name).default_backbone) for e in methods if e.name != "scratch"]
    scratch = [e for e in methods if e.name == "scratch"] or [MethodEntry("scratch")]
    used = list(dict.fromkeys(bb for e, bb in pairs if _unsupported(get_method(e.name), task, bb, finetune) is None))
    if pairs or any(e.name == "scratch" for e in methods):
        for bb in used or [backbone or get_method("scratch").default_backbone]:
            pairs += [(s, bb) for s in scratch]
    return pairs


def _unsupported(method_cls, task: Task, backbone: str, finetune: FinetuneSettings) -> str | None:
    """Why the method cannot run on this task / backbone: its own rule, or its task kind's."""
    return (method_cls.unsupported_reason(task=task, backbone=backbone)
            or task.kind.unsupported_reason(task, method_cls=method_cls, backbone=backbone,
                                            spatial_dims=BACKBONES.get(backbone).spatial_dims, finetune=finetune))


def _data_shortfall(method_cls, cfg, n_train: int) -> str | None:
    """A reason if the task has too few training cases for the method's sampling (e.g. CSI's N patients)."""
    spec = method_cls.data_spec(cfg)
    if spec.kind == "source_pool" and not spec.same_patient and n_train < spec.pool_size:
        return f"{method_cls.registry_name} draws N = {spec.pool_size} sources from different patients but only {n_train} training cases exist"
    return None


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
    from tasks.nifti import nifti_shape

    cases = {c.case_id: c for c in [*td.cases, *td.extra_cases]}
    return sum(nifti_shape(cases[i].images[0])[2] for i in ids)


def _job(entry: MethodEntry, method_cls, cfg, backbone: str, td: TaskData, *, seed: int, fold: int, n_folds: int, train_ids, val_ids, test_ids,
         pretrain_ids, cells: tuple[CellSpec, ...], profile: Profile, cache_dir: Path, finetune: FinetuneSettings, protocol: Protocol,
         na_reason: str | None) -> Job:
    roi = tuple(profile.rois[backbone])
    ft_recipe = profile.finetune_recipes[backbone]
    common = dict(
        method=entry.name, method_config=cfg, method_overrides=dict(entry.overrides), backbone=backbone, backbone_size=profile.backbone_size,
        task_ref=td.task.ref, task=td.task.name, data_root=str(td.root), seed=seed, fold=fold, n_folds=n_folds,
        label_aware=method_cls.label_aware, train_ids=tuple(train_ids), val_ids=tuple(val_ids), test_ids=tuple(test_ids), roi=roi,
        in_channels=len(td.task.channels),
        volume_size=tuple(profile.volume_size) if profile.volume_size else None, finetune_recipe=ft_recipe, finetune=finetune,
        protocol=protocol, cells=cells,
    )
    if na_reason is not None:
        return Job(**common, pretrain_channels=(0, 0), pretrain=None, finetune_steps=0, finetune_rounds=1, validation_every=1, na_reason=na_reason)
    channels = method_cls.backbone_channels(cfg, in_channels=len(td.task.channels))
    pre_recipe = profile.pretrain_recipe(method_cls, backbone)
    two_d = len(roi) == 2
    samples = _epoch_size(td, [*train_ids, *val_ids], two_d=two_d, volume_size=profile.volume_size)  # every non-test case
    extra = [i for i in pretrain_ids if i not in {*train_ids, *val_ids}]  # --pretrain-extra cases: epochs count them too
    pretrain = None
    if method_cls.pretrains:
        pretrain_samples = samples + (_epoch_size(td, extra, two_d=two_d, volume_size=profile.volume_size) if extra else 0)
        steps = pre_recipe.steps_for(pretrain_samples)
        key = content_hash({
            "method": entry.name, "backbone": backbone, "task": td.task.name, "seed": seed,
            "config": dataclasses.asdict(cfg), "recipe": _recipe_key(pre_recipe), "steps": steps, "roi": roi,
            "channels": channels, "volume_size": profile.volume_size, "backbone_size": dataclasses.asdict(profile.backbone_size),
            "pretrain_ids": pretrain_ids, "data": td.fingerprint, "version": 1,
            # only a label-aware pretraining samples by labels; others keep their keys whatever this constant is
            **({"foreground_prob": protocol.label_aware_pretrain_foreground_prob} if method_cls.label_aware else {}),
        })
        pretrain = PretrainSpec(recipe=pre_recipe, steps=steps, case_ids=tuple(pretrain_ids), key=key,
                                path=str(pretrain_checkpoint_path(cache_dir, key)),
                                extra_root=str(td.extra_root) if td.extra_root and extra else None, samples=pretrain_samples)
    # Every label fraction gets the same optimisation budget (steps), counted on the full training
    # set: small fractions are not also penalised with fewer updates.
    steps = ft_recipe.steps_for(samples)
    return Job(**common, pretrain_channels=tuple(channels), pretrain=pretrain, finetune_steps=steps, finetune_samples=samples,
               finetune_rounds=method_cls.finetune_rounds(cfg), validation_every=max(1, steps // protocol.validations_per_finetune))


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
    try:
        cfg = get_method(job.method).make_config({**job.method_overrides, **pretext})
        pre_recipe = dataclasses.replace(job.pretrain.recipe, **pre) if job.pretrain else None
        ft_recipe = dataclasses.replace(job.finetune_recipe, **fine)
    except (TypeError, ValueError) as exc:
        raise BenchmarkInputError(f"searched hyperparameters {params} for {job.method!r}: {exc}") from None
    pretrain = job.pretrain
    if pretrain is not None and (pretext or pre):
        steps = pre_recipe.steps_for(pretrain.samples)
        key = content_hash({"base": pretrain.key, "pretext": pretext, "recipe": _recipe_key(pre_recipe), "steps": steps})
        pretrain = dataclasses.replace(pretrain, recipe=pre_recipe, steps=steps, key=key, path=str(Path(pretrain.path).with_name(f"{key}.pt")))
    ft_steps = ft_recipe.steps_for(job.finetune_samples) if ft_recipe.steps is None else ft_recipe.steps
    config_id = content_hash({"base": job.cells[0].cell_id.rsplit("|", 1)[-1], "tuned": params}, 8)
    cells = tuple(dataclasses.replace(c, cell_id=f"{c.cell_id.rsplit('|', 1)[0]}|{config_id}") for c in job.cells)
    channels = tuple(get_method(job.method).backbone_channels(cfg, in_channels=job.in_channels))  # e.g. CSI: C x M̃ inputs
    return dataclasses.replace(job, method_config=cfg, pretrain=pretrain, pretrain_channels=channels, finetune_recipe=ft_recipe, finetune_steps=ft_steps,
                               validation_every=max(1, ft_steps // job.protocol.validations_per_finetune), cells=cells,
                               tuned_params=dict(params), search_budget=search_budget)
