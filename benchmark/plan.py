"""A Plan: the cells (method, backbone, task, fraction, seed, hyperparameters) of a run, grouped.

Cells that share a pretraining (method, backbone, task, seed, hyperparameters) form one
Group: pretrained once, then fine-tuned at every label fraction. Splits are patient-wise
and seeded; the test cases are fixed per task; label fractions are nested.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.classifier import classification_reason
from benchmark.errors import BenchmarkInputError
from benchmark.methods import get_method
from benchmark.profiles import Profile
from benchmark.store import content_hash, pretrain_checkpoint_path
from tasks import Case, SegmentationTask


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


def parse_fractions(text: str) -> list[Fraction]:
    out: list[Fraction] = []
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


# ---- method variants ------------------------------------------------------------------------------
def split_variant(entry: str) -> tuple[str, dict[str, Any]]:
    """"dae:cmcl=false:noise=false" -> ("dae", {"cmcl": False, "noise": False}); "dae" -> ("dae", {}).

    A variant is the same method with some hyperparameters set (an ablation), so one run can
    hold DAE and DAE w/o CMCL side by side. Values are JSON where they parse (false, 0.5, [1,2]).
    """
    import json

    name, *settings = entry.split(":")
    overrides: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not (sep and key):
            raise BenchmarkInputError(f"--methods {entry!r}: expected METHOD:KEY=VALUE[:KEY=VALUE...], e.g. dae:cmcl=false")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides


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


def labeled_subset(train_ids: list[str], n: int, *, seed: int) -> list[str]:
    """The first n of a seeded permutation: smaller fractions are subsets of larger ones (nested)."""
    order = np.random.default_rng(10_000 + seed).permutation(len(train_ids))
    return sorted(train_ids[i] for i in order[:n])


# ---- the plan ----------------------------------------------------------------------------------
@dataclass
class TaskData:
    """A task with its resolved data folder and cases (real or synthetic)."""

    task: SegmentationTask
    root: Path
    cases: list[Case]
    synthetic: bool
    fingerprint: str
    extra_root: Path | None = None  # --pretrain-extra: unlabeled cases for pretraining only
    extra_cases: list[Case] = field(default_factory=list)


@dataclass
class Cell:
    cell_id: str
    method: str
    backbone: str
    task: str
    fraction: str
    n_labeled: int
    seed: int
    fold: int
    labeled_ids: list[str]


@dataclass
class Group:
    method: str
    backbone: str
    task: str
    seed: int
    fold: int
    hparams: dict[str, Any]
    config: dict[str, Any]
    label_aware: bool
    cells: list[Cell] = field(default_factory=list)
    na_reason: str | None = None
    pretrain_key: str | None = None
    spec: dict[str, Any] | None = None  # what the worker needs (JSON-serialisable)
    n_folds: int = 1

    @property
    def title(self) -> str:
        fold = f" fold {self.fold}" if self.n_folds > 1 else ""
        return f"{self.method}/{self.backbone} on {self.task} seed {self.seed}{fold}"


@dataclass
class Plan:
    groups: list[Group]
    profile: Profile

    def runnable(self) -> list[Group]:
        return [g for g in self.groups if g.na_reason is None]


def _backbone_for(method_cls, requested: str | None) -> str:
    return requested or method_cls.default_backbone


def build_plan(
    *,
    methods: list[str],
    task_data: list[TaskData],
    fractions: list[Fraction],
    seeds: list[int],
    profile: Profile,
    cache_dir: Path,
    backbone: str | None = None,
    hparams: dict[str, dict[str, Any]] | None = None,
    finetune_aug: str = "none",
    mixup_alpha: float = 0.4,
    missing_series: float = 0.0,
    folds: int = 1,
) -> Plan:
    hparams = hparams or {}
    if not 0.0 <= missing_series <= 1.0:
        raise BenchmarkInputError(f"--missing-series {missing_series}: expected a share of cases in [0, 1]")
    # Downstream settings shared by every method of the run; absent keys keep older cell ids valid.
    augmentation = {"finetune_aug": finetune_aug, **({"mixup_alpha": mixup_alpha} if finetune_aug == "mixup" else {}),
                    **({"missing_series": missing_series} if missing_series else {})}
    groups: list[Group] = []
    for td in task_data:
        task = td.task
        # Classification tasks stratify by class so that every test set holds both classes (AUC defined).
        strata = {c.case_id: c.target for c in td.cases} if getattr(task, "kind", "segmentation") == "classification" else None
        splits = task_splits([c.case_id for c in td.cases], seeds=seeds, folds=folds, test_fraction=task.test_fraction,
                             split_seed=task.split_seed, strata=strata)
        n_train = min(len(train) for train, _ in splits.values())
        pairs: list[tuple[str, str]] = []
        variants: dict[tuple[str, str], dict[str, Any]] = {}  # (entry, backbone) -> variant overrides
        for entry in methods:
            name, variant = split_variant(entry)
            if name != "scratch":
                pairs.append((entry, _backbone_for(get_method(name), backbone)))
                variants[pairs[-1]] = variant
        # Scratch once per backbone that a runnable method on this task uses (fair comparison).
        used = []
        for entry, bb in pairs:
            if _unsupported(get_method(split_variant(entry)[0]), task, bb, finetune_aug) is None and bb not in used:
                used.append(bb)
        if "scratch" in methods or pairs:
            for bb in used or [backbone or get_method("scratch").default_backbone]:
                pairs.append(("scratch", bb))
        for entry, bb in pairs:
            name = split_variant(entry)[0]
            method_cls = get_method(name)
            overrides = {**hparams.get(name, {}), **variants.get((entry, bb), {})}
            try:
                cfg = method_cls.make_config(overrides)
            except (TypeError, ValueError) as exc:
                raise BenchmarkInputError(f"--hparam / --methods settings for {entry!r}: {exc}") from None
            na_reason = _unsupported(method_cls, task, bb, finetune_aug) or _data_shortfall(method_cls, cfg, n_train)
            config = {**dataclasses.asdict(cfg), **augmentation}
            for (seed, fold), (train_ids, test_ids) in splits.items():
                cells = []
                for fraction in fractions:
                    n = fraction.n_labeled(len(train_ids))
                    cell_id = f"{name}|{bb}|{task.name}|{fraction.label}|seed{seed}|fold{fold}|{content_hash(config, 8)}"
                    cells.append(Cell(cell_id, name, bb, task.name, fraction.label, n, seed, fold, labeled_subset(train_ids, n, seed=seed)))
                # A label-aware pretraining may only see the labels of the fraction it is compared at,
                # so it is one pretraining per fraction; otherwise one pretraining serves every fraction.
                for share in ([[c] for c in cells] if method_cls.label_aware else [cells]):
                    group = Group(method=name, backbone=bb, task=task.name, seed=seed, fold=fold, hparams=overrides, config=config,
                                  label_aware=method_cls.label_aware, cells=share, na_reason=na_reason, n_folds=folds)
                    if na_reason is None:
                        # Label-aware pretraining sees only labelled cases; others also the --pretrain-extra cases.
                        pretrain_ids = share[0].labeled_ids if method_cls.label_aware else train_ids + [c.case_id for c in td.extra_cases]
                        _attach_spec(group, method_cls, cfg, td, train_ids, test_ids, pretrain_ids, profile, cache_dir)
                    groups.append(group)
    return Plan(groups=groups, profile=profile)


def _unsupported(method_cls, task: SegmentationTask, backbone: str, finetune_aug: str) -> str | None:
    """Why the method cannot run on this task / backbone: its own rule, or, on a case-level classification
    task, the classifier's (a 2D backbone has no whole-case features; benchmark/classifier.py)."""
    return (method_cls.unsupported_reason(task=task, backbone=backbone)
            or classification_reason(task, method_cls=method_cls, backbone=backbone, finetune_aug=finetune_aug))


def _data_shortfall(method_cls, cfg, n_train: int) -> str | None:
    """A reason if the task has too few training cases for the method's sampling (e.g. CSI's N patients)."""
    spec = method_cls.data_spec(cfg)
    if spec.kind == "source_pool" and not spec.same_patient and n_train < spec.pool_size:
        return f"{method_cls.registry_name} draws N = {spec.pool_size} sources from different patients but only {n_train} training cases exist"
    return None


def _epoch_size(td: TaskData, ids: list[str], *, two_d: bool, volume_size) -> int:
    """Samples in one epoch: volumes for 3D networks, axial slices (read from the headers) for 2D ones."""
    if not two_d:
        return len(ids)
    if volume_size:
        return len(ids) * volume_size[2]
    from tasks.nifti import nifti_shape

    cases = {c.case_id: c for c in [*td.cases, *td.extra_cases]}
    return sum(nifti_shape(cases[i].images[0])[2] for i in ids)


def _attach_spec(group: Group, method_cls, cfg, td: TaskData, train_ids, test_ids, pretrain_ids, profile: Profile, cache_dir: Path) -> None:
    roi = profile.rois[group.backbone]
    channels = method_cls.backbone_channels(cfg, in_channels=len(td.task.channels))
    pre_recipe = profile.pretrain_recipe(method_cls, group.backbone)
    ft_recipe = profile.finetune_recipes[group.backbone]
    samples = _epoch_size(td, train_ids, two_d=len(roi) == 2, volume_size=profile.volume_size)
    extra = [i for i in pretrain_ids if i not in set(train_ids)]  # --pretrain-extra cases: epochs count them too
    pretrain_samples = samples + (_epoch_size(td, extra, two_d=len(roi) == 2, volume_size=profile.volume_size) if extra else 0)
    pretrain_steps = pre_recipe.steps_for(pretrain_samples) if method_cls.pretrains else 0
    # Every label fraction gets the same optimisation budget (steps), counted on the full training
    # set: small fractions are not also penalised with fewer updates.
    finetune_steps = ft_recipe.steps_for(samples)
    key_payload = {
        "method": group.method, "backbone": group.backbone, "task": group.task, "seed": group.seed,
        "config": dataclasses.asdict(cfg), "recipe": dataclasses.asdict(pre_recipe), "steps": pretrain_steps, "roi": roi,
        "channels": channels, "volume_size": profile.volume_size, "backbone_size": dataclasses.asdict(profile.backbone_size),
        "pretrain_ids": pretrain_ids, "data": td.fingerprint, "version": 1,
    }
    group.pretrain_key = content_hash(key_payload) if method_cls.pretrains else None
    group.spec = {  # "task": what the worker passes to get_task, the ref (nnunet:/abs/path), not the display name
        "method": group.method, "backbone": group.backbone, "task": td.task.ref, "seed": group.seed, "fold": group.fold,
        "hparams": group.hparams, "data_root": str(td.root), "train_ids": train_ids, "test_ids": test_ids,
        "extra_root": str(td.extra_root) if td.extra_root and extra else None,
        "pretrain_ids": pretrain_ids, "label_aware": method_cls.label_aware, "finetune_aug": group.config["finetune_aug"],
        "mixup_alpha": group.config.get("mixup_alpha"), "missing_series": group.config.get("missing_series", 0.0),
        "finetune_rounds": method_cls.finetune_rounds(cfg),
        "roi": list(roi), "volume_size": list(profile.volume_size) if profile.volume_size else None,
        "backbone_size": dataclasses.asdict(profile.backbone_size),
        "pretrain_recipe": dataclasses.asdict(pre_recipe), "pretrain_steps": pretrain_steps,
        "finetune_recipe": dataclasses.asdict(ft_recipe), "finetune_steps": finetune_steps,
        "pretrain_key": group.pretrain_key,
        "pretrain_path": str(pretrain_checkpoint_path(cache_dir, group.pretrain_key)) if group.pretrain_key else None,
        "cells": [{"cell_id": c.cell_id, "fraction": c.fraction, "labeled_ids": c.labeled_ids} for c in group.cells],
    }
