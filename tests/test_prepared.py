"""The prepared, memory-mapped data layer (benchmark/prepared.py): the same values, draws and results as decoding the files
in memory, written once per file content and settings, shared, and read lazily; and the loaders' worker processes.

Data are built the way the pipeline builds them: the task's synthetic writer in its real layout, ``resolve_task_data``,
``build_plan``, and the datasets and loaders of ``benchmark.train``."""
from __future__ import annotations

import dataclasses
import os

import nibabel as nib
import numpy as np
import pytest
import torch

from benchmark.data import CropDataset, SourcePoolDataset, body_slices, drop_series, load_volumes, random_crop
from benchmark.datasources import resolve_task_data
from benchmark.errors import BenchmarkInputError
from benchmark.kinds import kind_of
from benchmark.cli import parse_fractions
from benchmark.plan import MethodEntry, build_plan, with_execution
from benchmark.prepared import case_folder, open_volumes, prepare_cases, prepared_dir, prepared_root, read_volumes, settings_hash
from benchmark.profiles import SMOKE
from benchmark.protocol import DEFAULT_PROTOCOL
from benchmark.records import ExecutionSettings, FinetuneSettings
from benchmark.train import Hooks, _loader, run_job
from tasks import get_task

SHAPE = (32, 32, 16)


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prepared")
    task = get_task("brats")
    task.write_synthetic(tmp / "brats", n_cases=8, shape=SHAPE, seed=0)
    td = resolve_task_data(task, data_root=tmp / "brats", cache_dir=tmp / "cache")
    root = prepared_root(prepared_dir(tmp / "cache"), task, volume_size=SHAPE)
    prepare_cases(task, td.cases, root, volume_size=SHAPE, workers=2, log=lambda _m: None)
    return task, td, root, tmp


def test_prepared_volumes_hold_the_decoded_values_memory_mapped(brats):
    """Image, label values, spacing and class equal load_volumes'; the arrays are memory maps, labels stored small."""
    task, td, root, _ = brats
    loaded = load_volumes(task, td.cases, volume_size=SHAPE)
    opened = open_volumes(task, td.cases, root, volume_size=SHAPE)
    for a, b in zip(loaded, opened):
        assert a.case_id == b.case_id and a.spacing == b.spacing and a.target == b.target
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
        assert isinstance(b.image, np.memmap) and isinstance(b.label, np.memmap)
        assert b.label.dtype == np.uint8 and a.label.dtype == np.int64
        assert b.index is not None and b.index.describes(b)


@pytest.mark.parametrize("roi,foreground_prob", [((32, 32), 0.0), ((32, 32), 0.6), ((16, 16, 8), 0.0), ((16, 16, 8), 0.9)])
def test_crops_from_prepared_volumes_equal_crops_from_decoded_ones(brats, roi, foreground_prob):
    """The index (body / labelled slices, foreground voxels) gives the draws a scan of the arrays gives: same crops."""
    task, td, root, _ = brats
    loaded = load_volumes(task, td.cases, volume_size=SHAPE)
    opened = open_volumes(task, td.cases, root, volume_size=SHAPE)
    for a, b in zip(loaded, opened):
        for seed in range(12):
            image_a, label_a = random_crop(a, roi, np.random.default_rng(seed), foreground_prob=foreground_prob)
            image_b, label_b = random_crop(b, roi, np.random.default_rng(seed), foreground_prob=foreground_prob)
            np.testing.assert_array_equal(image_a, image_b)
            np.testing.assert_array_equal(label_a, label_b)
            assert label_b.dtype == np.int64 and not isinstance(image_b, np.memmap)  # a copy, not a view of the file


@pytest.mark.parametrize("same_patient", [False, True])
def test_source_pools_from_prepared_volumes_equal_decoded_ones(brats, same_patient):
    task, td, root, _ = brats
    args = dict(roi=(32, 32), length=6, seed=3, pool_size=3, same_patient=same_patient)
    a = SourcePoolDataset(load_volumes(task, td.cases, volume_size=SHAPE), **args)
    b = SourcePoolDataset(open_volumes(task, td.cases, root, volume_size=SHAPE), **args)
    for i in range(len(a)):
        assert torch.equal(a[i]["sources"], b[i]["sources"])


def test_an_index_never_describes_replaced_arrays(brats):
    """A series dropped (new image array): the stale index is ignored and the new array scanned."""
    task, td, root, _ = brats
    (volume,) = open_volumes(task, td.cases[:1], root, volume_size=SHAPE)
    blank = dataclasses.replace(volume, image=np.zeros_like(volume.image))
    assert not blank.index.describes(blank) and body_slices(blank).size == 0
    assert body_slices(volume).size > 0
    (dropped,) = drop_series([dataclasses.replace(volume, case_id="x")], 1.0)
    np.testing.assert_array_equal(body_slices(dropped), np.flatnonzero((dropped.image != 0).reshape(-1, SHAPE[2]).any(axis=0)))


def test_folders_are_keyed_by_file_content_and_settings(brats, tmp_path):
    """Another volume size is another folder; a rewritten file is another case folder; an unchanged case is not rewritten."""
    task, td, root, _ = brats
    assert settings_hash(task, volume_size=SHAPE) != settings_hash(task, volume_size=(16, 16, 8))
    case = td.cases[0]
    folder = case_folder(root, case)
    before = os.stat(folder / "image.npy").st_mtime_ns
    assert prepare_cases(task, td.cases, root, volume_size=SHAPE, workers=1, log=lambda _m: None) == 0
    assert os.stat(folder / "image.npy").st_mtime_ns == before
    stat = os.stat(case.images[0])
    os.utime(case.images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    try:
        assert case_folder(root, case) != folder
    finally:
        os.utime(case.images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_parallel_preparation_equals_serial(brats, tmp_path):
    task, td, root, _ = brats
    serial = tmp_path / "serial"
    assert prepare_cases(task, td.cases[:3], serial, volume_size=SHAPE, workers=1, log=lambda _m: None) == 3
    for case in td.cases[:3]:
        for name in ("image", "label", "body_slices", "labelled_slices", "foreground"):
            np.testing.assert_array_equal(np.load(case_folder(serial, case) / f"{name}.npy"), np.load(case_folder(root, case) / f"{name}.npy"))


def test_a_corrupt_file_names_itself_and_keeps_what_was_prepared(tmp_path):
    """A truncated .nii.gz met while preparing (in a pool process): one error naming the file; the cases before stay."""
    task = get_task("brats")
    task.write_synthetic(tmp_path / "data", n_cases=4, shape=SHAPE, seed=0)
    cases = task.find_cases(tmp_path / "data")
    bad = cases[-1].images[0]
    bad.write_bytes(bad.read_bytes()[:200])
    root = tmp_path / "prepared"
    prepare_cases(task, cases[:1], root, volume_size=SHAPE, workers=1, log=lambda _m: None)
    with pytest.raises(BenchmarkInputError, match=bad.name):
        prepare_cases(task, cases, root, volume_size=SHAPE, workers=2, log=lambda _m: None)
    assert case_folder(root, cases[0]).is_dir() and not case_folder(root, cases[-1]).exists()


def test_read_volumes_without_a_folder_decodes_in_memory(brats):
    task, td, _, _ = brats
    (volume,) = read_volumes(task, td.cases[:1], volume_size=SHAPE, folder=None)
    assert not isinstance(volume.image, np.memmap) and volume.index is None


# ---- loader workers -----------------------------------------------------------------------------------------
def test_loader_workers_give_the_same_batches(brats):
    """K DataLoader processes build exactly the batches of the training process (samples seeded by their index),
    with a spatial augmentation and foreground sampling on."""
    task, td, root, _ = brats
    volumes = open_volumes(task, td.cases, root, volume_size=SHAPE)
    dataset = kind_of(task).training_set(task, volumes, roi=(16, 16, 8), length=12, seed=5, protocol=DEFAULT_PROTOCOL,
                                         finetune=FinetuneSettings(spatial_aug="dae"))
    assert isinstance(dataset, CropDataset) and dataset.augmentation is not None

    def batches(workers: int) -> list[dict]:
        torch.manual_seed(0)
        hooks = Hooks(execution=ExecutionSettings(loader_workers=workers))
        return list(_loader(dataset, 4, hooks))

    for a, b in zip(batches(0), batches(2)):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _tiny_plan(tmp, td, execution=ExecutionSettings()):
    few = lambda recipe: dataclasses.replace(recipe, steps=3, batch_size=2)  # noqa: E731
    profile = dataclasses.replace(SMOKE, name="unit", volume_size=SHAPE, rois={**SMOKE.rois, "unet2d": (32, 32)},
                                  finetune_recipes={k: few(v) for k, v in SMOKE.finetune_recipes.items()},
                                  smoke_pretrain={k: few(v) for k, v in SMOKE.smoke_pretrain.items()})
    return build_plan(methods=[MethodEntry("csi")], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=profile,
                      cache_dir=tmp / "cache", execution=execution)


def test_run_job_results_do_not_depend_on_the_loader_workers_or_the_prepared_copy(brats, tmp_path):
    """One CSI Job (pretraining + fine-tuning + test): prepared with 2 loader workers = decoded in memory, in-process."""
    task, td, _, tmp = brats
    job = next(j for j in _tiny_plan(tmp, td).jobs if j.method == "csi")
    job = dataclasses.replace(job, pretrain=dataclasses.replace(job.pretrain, path=str(tmp_path / "a.pt")))
    plain = run_job(dataclasses.replace(job, prepared_dir=None), Hooks(log=lambda _m: None))
    workers = dataclasses.replace(job, execution=ExecutionSettings(loader_workers=2),
                                  pretrain=dataclasses.replace(job.pretrain, path=str(tmp_path / "b.pt")))
    fast = run_job(workers, Hooks(log=lambda _m: None))
    for a, b in zip(plain, fast):
        assert [(r.metric, r.case_id, r.value) for r in a.rows] == [(r.metric, r.case_id, r.value) for r in b.rows]
        assert a.final_finetune_loss == b.final_finetune_loss
        assert set(b.step_seconds) == {"pretrain", "finetune"} and all(s > 0 for s in b.step_seconds.values())


# ---- execution settings in the plan -----------------------------------------------------------------------------
def test_max_steps_caps_every_stage_and_keys_the_dry_run_apart(brats):
    task, td, _, tmp = brats
    plain = next(j for j in _tiny_plan(tmp, td).jobs if j.method == "csi")
    capped = next(j for j in _tiny_plan(tmp, td, ExecutionSettings(max_steps=1)).jobs if j.method == "csi")
    assert (capped.pretrain.steps, capped.finetune_steps) == (1, 1) and (plain.pretrain.steps, plain.finetune_steps) == (3, 3)
    assert capped.pretrain.key != plain.pretrain.key and capped.pretrain.path != plain.pretrain.path
    assert {c.cell_id for c in capped.cells}.isdisjoint(c.cell_id for c in plain.cells)
    assert capped.roi == plain.roi and capped.test_ids == plain.test_ids and capped.val_ids == plain.val_ids
    # fp32 without a cap: the keys of a default run (older caches and cell ids stay valid); bf16 is keyed apart
    assert with_execution(plain, ExecutionSettings(loader_workers=4, compile=True)).pretrain.key == plain.pretrain.key
    assert with_execution(plain, ExecutionSettings(precision="bf16")).pretrain.key != plain.pretrain.key
    assert plain.prepared_dir == str(prepared_dir(tmp / "cache"))


@pytest.mark.parametrize("bad", [dict(precision="fp8"), dict(loader_workers=-1), dict(max_steps=0)])
def test_execution_settings_reject_bad_values(bad):
    with pytest.raises(ValueError, match="expected"):
        ExecutionSettings(**bad)


def test_bf16_training_step_runs_on_cpu(brats, tmp_path):
    """--precision bf16: the loops autocast (CPU here); the loss stays finite and the Job returns its rows."""
    task, td, _, tmp = brats
    job = next(j for j in _tiny_plan(tmp, td, ExecutionSettings(precision="bf16", max_steps=1)).jobs if j.method == "csi")
    job = dataclasses.replace(job, pretrain=dataclasses.replace(job.pretrain, path=str(tmp_path / "bf16.pt")))
    (result,) = run_job(job, Hooks(log=lambda _m: None))
    assert np.isfinite(result.final_finetune_loss) and result.rows


def test_prepared_spacing_is_the_resampled_header_spacing(brats):
    task, td, root, _ = brats
    (volume,) = open_volumes(task, td.cases[:1], root, volume_size=SHAPE)
    zooms = nib.load(td.cases[0].images[0]).header.get_zooms()[:3]
    native = nib.load(td.cases[0].images[0]).shape[:3]
    expected = tuple(z * n / s for z, n, s in zip(zooms, native, SHAPE))
    np.testing.assert_allclose(volume.spacing, expected, rtol=1e-5)
