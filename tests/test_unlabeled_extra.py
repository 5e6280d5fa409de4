"""--pretrain-extra: unlabeled cases in the generic PATH/<case>/<channel>.nii.gz layout, pretraining only."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.datasources import attach_unlabeled, resolve_task_data
from benchmark.errors import BenchmarkInputError
from benchmark.cli import parse_fractions
from benchmark.plan import MethodEntry, build_plan
from benchmark.profiles import SMOKE
from tasks import get_task
from tasks.nifti import save_nifti
from tasks.unlabeled import find_unlabeled_cases

SHAPE = (32, 32, 16)


def _extra_folder(root: Path, n: int = 3) -> Path:
    """Unlabeled BraTS-like cases written in the generic layout (no seg file)."""
    tmp = root / "tmp_brats"
    get_task("brats").write_synthetic(tmp, n_cases=n, shape=SHAPE, seed=7)
    extra = root / "extra"
    for i, subject in enumerate(sorted(p for p in tmp.iterdir() if p.is_dir())):
        for modality in ("t1", "t1ce", "t2", "flair"):
            target = extra / f"u{i}" / f"{modality.upper() if modality == 'flair' else modality}.nii.gz"  # names are case-insensitive
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(subject / f"{subject.name}_{modality}.nii.gz", target)
    return extra


def test_generic_layout_is_read_in_channel_order(tmp_path):
    extra = _extra_folder(tmp_path)
    cases = find_unlabeled_cases(get_task("brats"), extra)
    assert [c.case_id for c in cases] == ["unlabeled:u0", "unlabeled:u1", "unlabeled:u2"]
    assert [p.name for p in cases[0].images] == ["t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz", "FLAIR.nii.gz"]
    volume = get_task("brats").load(cases[0])
    assert volume.image.shape == (4, *SHAPE) and volume.label is None  # unlabeled: no label map


def test_bad_unlabeled_folders_name_the_problem(tmp_path):
    task = get_task("brats")
    with pytest.raises(BenchmarkInputError, match="does not exist"):
        find_unlabeled_cases(task, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkInputError, match="no case folders"):
        find_unlabeled_cases(task, tmp_path / "empty")
    extra = _extra_folder(tmp_path)
    (extra / "u1" / "t2.nii.gz").unlink()
    with pytest.raises(BenchmarkInputError, match=r"u1.*'t2'"):
        find_unlabeled_cases(task, extra)


def test_nan_or_grid_mismatch_stops_before_training(tmp_path):
    td = resolve_task_data(get_task("brats"), data_root=None, cache_dir=tmp_path / "cache")
    extra = _extra_folder(tmp_path)
    bad = extra / "u0" / "t1.nii.gz"
    save_nifti(np.full(SHAPE, np.nan, dtype=np.float32), bad)
    with pytest.raises(BenchmarkInputError, match="t1.nii.gz.*NaN"):
        attach_unlabeled(td, extra, cache_dir=tmp_path / "cache")
    save_nifti(np.ones((8, 8, 8), dtype=np.float32), bad)
    with pytest.raises(BenchmarkInputError, match="one voxel grid"):
        attach_unlabeled(td, extra, cache_dir=tmp_path / "cache")


def test_extra_cases_enter_pretraining_only_and_not_label_aware_methods(tmp_path):
    """Unlabeled cases join the pretraining ids of self-supervised methods; never fine-tuning, test or LADP."""
    cache = tmp_path / "cache"
    plain = resolve_task_data(get_task("brats"), data_root=None, cache_dir=cache)
    td = attach_unlabeled(resolve_task_data(get_task("brats"), data_root=None, cache_dir=cache), _extra_folder(tmp_path), cache_dir=cache)
    plan = build_plan(methods=[MethodEntry("csi"), MethodEntry("ladp")], task_data=[td], fractions=parse_fractions("100%,25%"), seeds=[0], profile=SMOKE, cache_dir=cache)
    csi = next(g for g in plan.jobs if g.method == "csi")
    extra_ids = {"unlabeled:u0", "unlabeled:u1", "unlabeled:u2"}
    assert extra_ids <= set(csi.pretrain.case_ids) and csi.pretrain.extra_root == str(td.extra_root)
    assert extra_ids.isdisjoint(csi.train_ids + csi.test_ids)
    assert all(extra_ids.isdisjoint(c.labeled_ids) for c in csi.cells)
    for ladp in (g for g in plan.jobs if g.method == "ladp"):
        assert extra_ids.isdisjoint(ladp.pretrain.case_ids) and ladp.pretrain.extra_root is None
    without = build_plan(methods=[MethodEntry("csi")], task_data=[plain], fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE, cache_dir=cache)
    assert next(g for g in without.jobs if g.method == "csi").pretrain.key != csi.pretrain.key


def test_run_job_pretrains_on_the_extra_volumes(tmp_path, monkeypatch):
    import benchmark.train as train

    cache = tmp_path / "cache"
    data = tmp_path / "brats"
    get_task("brats").write_synthetic(data, n_cases=8, shape=SHAPE, seed=0)
    td = attach_unlabeled(resolve_task_data(get_task("brats"), data_root=data, cache_dir=cache), _extra_folder(tmp_path), cache_dir=cache)
    few = lambda recipe: dataclasses.replace(recipe, steps=1, batch_size=2)  # noqa: E731
    profile = dataclasses.replace(SMOKE, name="unit", volume_size=SHAPE, rois={**SMOKE.rois, "unet2d": (32, 32)},
                                  finetune_recipes={k: few(v) for k, v in SMOKE.finetune_recipes.items()},
                                  smoke_pretrain={k: few(v) for k, v in SMOKE.smoke_pretrain.items()})
    plan = build_plan(methods=[MethodEntry("inpainting")], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=profile,
                      cache_dir=cache)
    group = next(g for g in plan.jobs if g.method == "inpainting")
    seen = []
    real = train.pretrain
    monkeypatch.setattr(train, "pretrain", lambda method, volumes, **kw: seen.append([v.case_id for v in volumes]) or real(method, volumes, **kw))
    train.run_job(group, train.Hooks(log=lambda _m: None))
    assert {"unlabeled:u0", "unlabeled:u1", "unlabeled:u2"} <= set(seen[0])
    assert set(seen[0]) - {"unlabeled:u0", "unlabeled:u1", "unlabeled:u2"} == set(group.train_ids + group.val_ids)
