"""Task readers (tasks/brats.py, tasks/btcv.py) and data sources (benchmark/datasources.py) on tiny files."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from benchmark.datasources import resolve_task_data, synthetic_root
from benchmark.errors import BenchmarkInputError
from tasks import get_task
from tasks.brats import BraTS
from tasks.btcv import BTCV
from tasks.nifti import save_nifti

SHAPE = (32, 32, 16)
MODALITIES = ("t1", "t1ce", "t2", "flair")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("brats")
    get_task("brats").write_synthetic(root, n_cases=4, shape=SHAPE, seed=0)
    return root


@pytest.fixture(scope="module")
def btcv_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("btcv")
    get_task("btcv").write_synthetic(root, n_cases=3, shape=SHAPE, seed=0)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- layout -------------------------------------------------------------------------------------
def test_brats_synthetic_layout(brats_root):
    """BraTS synthetic data is written as <subj>/<subj>_{t1,t1ce,t2,flair,seg}.nii.gz."""
    expected = {
        f"Synth_BraTS_{i:03d}/Synth_BraTS_{i:03d}_{suffix}.nii.gz"
        for i in range(4) for suffix in (*MODALITIES, "seg")
    }
    assert _files(brats_root) == expected


def test_btcv_synthetic_layout(btcv_root):
    """BTCV synthetic data is written as imagesTr/img0001.nii.gz + labelsTr/label0001.nii.gz."""
    expected = {f"imagesTr/img{i:04d}.nii.gz" for i in (1, 2, 3)} | {f"labelsTr/label{i:04d}.nii.gz" for i in (1, 2, 3)}
    assert _files(btcv_root) == expected


def test_brats_find_cases_channel_order(brats_root):
    """find_cases returns one case per subject with images in t1, t1ce, t2, flair order and the seg label."""
    cases = get_task("brats").find_cases(brats_root)
    assert [c.case_id for c in cases] == [f"Synth_BraTS_{i:03d}" for i in range(4)]
    for case in cases:
        assert [p.name for p in case.images] == [f"{case.case_id}_{m}.nii.gz" for m in MODALITIES]
        assert case.label.name == f"{case.case_id}_seg.nii.gz"


def test_brats_find_cases_with_hgg_lgg_grouping(brats_root, tmp_path):
    """Subject folders grouped one level deeper (HGG/, LGG/ as in BraTS 2018) are found."""
    for i, group in enumerate(("HGG", "HGG", "LGG")):
        name = f"Synth_BraTS_{i:03d}"
        shutil.copytree(brats_root / name, tmp_path / group / name)
    cases = get_task("brats").find_cases(tmp_path)
    assert sorted(c.case_id for c in cases) == ["Synth_BraTS_000", "Synth_BraTS_001", "Synth_BraTS_002"]


def test_btcv_find_cases(btcv_root):
    """find_cases pairs imgXXXX with labelXXXX."""
    cases = get_task("btcv").find_cases(btcv_root)
    assert [c.case_id for c in cases] == ["img0001", "img0002", "img0003"]
    for case in cases:
        assert case.images == (btcv_root / "imagesTr" / f"{case.case_id}.nii.gz",)
        assert case.label == btcv_root / "labelsTr" / (case.case_id.replace("img", "label") + ".nii.gz")


# ---- reading back ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["brats", "btcv"])
def test_load_roundtrip_shapes_and_label_values(name, brats_root, btcv_root):
    """load() returns image [C, *shape] float32 and an int64 label with values in task.label_values."""
    task = get_task(name)
    root = brats_root if name == "brats" else btcv_root
    cases = task.find_cases(root)
    task.check_cases(cases, root=root)
    seen = set()
    for case in cases:
        volume = task.load(case)
        assert volume.case_id == case.case_id
        assert volume.image.shape == (len(task.channels), *SHAPE) and volume.image.dtype == np.float32
        assert volume.label.shape == SHAPE and volume.label.dtype == np.int64
        assert np.isfinite(volume.image).all()
        seen |= set(np.unique(volume.label).tolist())
        raw = np.asarray(nib.load(str(case.label)).dataobj)
        np.testing.assert_array_equal(volume.label, raw)
    assert seen <= set(task.label_values)
    assert len(seen) >= 3  # the synthetic data has background and several structures


def test_brats_label_nesting(brats_root):
    """Tumour labels lie inside the brain, edema (2) surrounds the core (1|4), enhancing (4) the necrosis (1)."""
    task = get_task("brats")
    for case in task.find_cases(brats_root):
        volume = task.load(case)
        label = volume.label
        brain = (volume.image != 0).any(axis=0)
        tumour, core = label > 0, (label == 1) | (label == 4)
        assert core.any() and (label == 2).any()
        assert brain[tumour].all()
        core_ring = ndimage.binary_dilation(core) & ~core
        assert (label[core_ring] == 2).mean() > 0.9
        if (label == 1).any():
            necrosis_ring = ndimage.binary_dilation(label == 1) & (label != 1)
            assert (label[necrosis_ring] == 4).mean() > 0.6
            assert (label[necrosis_ring] != 0).all()


def test_brats_normalisation_zscore_inside_foreground(brats_root):
    """BraTS normalisation: per channel mean ≈ 0 and std ≈ 1 over the brain, background exactly 0."""
    task = get_task("brats")
    case = task.find_cases(brats_root)[0]
    raw = np.stack([np.asarray(nib.load(str(p)).dataobj, dtype=np.float32) for p in case.images])
    foreground = (raw != 0).any(axis=0)
    image = task.load(case).image
    for c in range(4):
        values = image[c][foreground]
        assert abs(values.mean()) < 1e-3
        assert values.std() == pytest.approx(1.0, abs=1e-3)
    assert (image[:, ~foreground] == 0).all()


def test_brats_normalize_known_values():
    """normalize() z-scores each channel over voxels where ANY channel is non-zero."""
    image = np.zeros((2, 2, 2, 1), dtype=np.float32)
    image[0, 0, 0, 0], image[0, 0, 1, 0] = 1.0, 3.0
    image[1, 0, 0, 0], image[1, 0, 1, 0] = 10.0, 10.0
    out = BraTS().normalize(image)
    np.testing.assert_allclose(out[0, 0, :, 0], [-1.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(out[1, 0, :, 0], [0.0, 0.0], atol=1e-5)
    assert (out[:, 1] == 0).all()


def test_btcv_normalisation_hu_window():
    """BTCV normalisation maps HU −175 -> 0, 250 -> 1, linearly between, and clips outside."""
    hu = np.array([[-1000.0, -175.0, 37.5, 250.0, 1500.0]], dtype=np.float32)
    np.testing.assert_allclose(BTCV().normalize(hu), [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)


def test_btcv_loaded_image_in_unit_interval(btcv_root):
    """Loaded BTCV images lie in [0, 1] and use the whole range (air and bone are clipped)."""
    task = get_task("btcv")
    image = task.load(task.find_cases(btcv_root)[0]).image
    assert image.min() == 0.0 and image.max() == 1.0


# ---- bad input ------------------------------------------------------------------------------------
def test_missing_modality_names_folder_and_modality(brats_root, tmp_path):
    """A subject without its t2 file -> BenchmarkInputError naming the subject folder and 't2'."""
    root = _copy(brats_root, tmp_path / "data")
    (root / "Synth_BraTS_001" / "Synth_BraTS_001_t2.nii.gz").unlink()
    with pytest.raises(BenchmarkInputError) as info:
        get_task("brats").find_cases(root)
    message = str(info.value)
    assert str(root / "Synth_BraTS_001") in message and "'t2'" in message


def test_label_shape_mismatch_names_label_file(brats_root, tmp_path):
    """A label on another voxel grid than its images -> error naming the label file."""
    root = _copy(brats_root, tmp_path / "data")
    label = root / "Synth_BraTS_002" / "Synth_BraTS_002_seg.nii.gz"
    save_nifti(np.zeros((32, 32, 8), dtype=np.uint8), label)
    task = get_task("brats")
    with pytest.raises(BenchmarkInputError) as info:
        task.check_cases(task.find_cases(root), root=root)
    assert str(label) in str(info.value) and "shape" in str(info.value)


def test_unknown_brats_label_value_names_file_and_value(brats_root, tmp_path):
    """Label value 3 (not a BraTS 2018 value) -> error naming the file and the value."""
    root = _copy(brats_root, tmp_path / "data")
    label = root / "Synth_BraTS_000" / "Synth_BraTS_000_seg.nii.gz"
    data = np.asarray(nib.load(str(label)).dataobj).copy()
    data[0, 0, 0] = 3
    save_nifti(data, label)
    task = get_task("brats")
    with pytest.raises(BenchmarkInputError) as info:
        task.check_cases(task.find_cases(root), root=root)
    assert str(label) in str(info.value)
    assert re.search(r"\[3(\.0)?\]", str(info.value)), str(info.value)


def test_truncated_image_names_file(btcv_root, tmp_path):
    """A truncated .nii.gz image -> BenchmarkInputError naming the file when loaded."""
    root = _copy(btcv_root, tmp_path / "data")
    image = root / "imagesTr" / "img0002.nii.gz"
    blob = image.read_bytes()
    image.write_bytes(blob[: len(blob) // 2])
    task = get_task("btcv")
    case = {c.case_id: c for c in task.find_cases(root)}["img0002"]
    with pytest.raises(BenchmarkInputError) as info:
        task.load(case)
    assert str(image) in str(info.value)


def test_truncated_label_rejected_up_front(btcv_root, tmp_path):
    """A truncated label file is caught by resolve_task_data (before training), naming the file."""
    root = _copy(btcv_root, tmp_path / "data")
    label = root / "labelsTr" / "label0003.nii.gz"
    blob = label.read_bytes()
    label.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task("btcv"), data_root=root, cache_dir=tmp_path / "cache")
    assert str(label) in str(info.value)


def test_garbage_file_names_file(btcv_root, tmp_path):
    """A file that is not NIfTI at all -> error naming it (even the header cannot be read)."""
    root = _copy(btcv_root, tmp_path / "data")
    image = root / "imagesTr" / "img0001.nii.gz"
    image.write_bytes(b"not a nifti file")
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task("btcv"), data_root=root, cache_dir=tmp_path / "cache")
    assert str(image) in str(info.value)


def test_btcv_missing_label_names_expected_file(btcv_root, tmp_path):
    """An image without its label -> error naming the expected label path."""
    root = _copy(btcv_root, tmp_path / "data")
    (root / "labelsTr" / "label0002.nii.gz").unlink()
    with pytest.raises(BenchmarkInputError) as info:
        get_task("btcv").find_cases(root)
    assert str(root / "labelsTr" / "label0002.nii.gz") in str(info.value)


def test_btcv_wrong_layout_names_missing_folder(tmp_path):
    """A folder without imagesTr -> error naming the folder and the expected layout."""
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(BenchmarkInputError, match="imagesTr"):
        resolve_task_data(get_task("btcv"), data_root=tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name", ["brats", "btcv"])
def test_empty_data_root(name, tmp_path):
    """An empty --data-root folder -> error saying it is empty and naming it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task(name), data_root=empty, cache_dir=tmp_path / "cache")
    assert str(empty) in str(info.value) and "empty" in str(info.value)


@pytest.mark.parametrize("name", ["brats", "btcv"])
def test_nonexistent_data_root(name, tmp_path):
    """A --data-root that does not exist -> error saying so and naming it."""
    missing = tmp_path / "nope"
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task(name), data_root=missing, cache_dir=tmp_path / "cache")
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)


def test_brats_root_without_subjects(tmp_path):
    """A non-empty folder with no BraTS subject -> error naming the folder and the layout."""
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task("brats"), data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert str(tmp_path) in str(info.value) and "seg}.nii.gz" in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_intensity_rejected_on_load(bad, btcv_root, tmp_path):
    """A NaN / inf intensity -> BenchmarkInputError naming the image when loaded."""
    root = _copy(btcv_root, tmp_path / "data")
    image = root / "imagesTr" / "img0001.nii.gz"
    data = np.asarray(nib.load(str(image)).dataobj).astype(np.float32)
    data[3, 4, 5] = bad
    save_nifti(data, image)
    task = get_task("btcv")
    with pytest.raises(BenchmarkInputError) as info:
        task.load(task.find_cases(root)[0])
    assert str(image) in str(info.value)


def test_nan_and_truncated_images_stop_the_run_up_front(btcv_root, tmp_path):
    """resolve_task_data (before any training) reads every image: NaNs or a truncated file name the file."""
    root = _copy(btcv_root, tmp_path / "data")
    image = root / "imagesTr" / "img0002.nii.gz"
    data = np.asarray(nib.load(str(image)).dataobj).astype(np.float32)
    data[1, 1, 1] = np.nan
    save_nifti(data, image)
    with pytest.raises(BenchmarkInputError, match="NaN") as info:
        resolve_task_data(get_task("btcv"), data_root=root, cache_dir=tmp_path / "cache")
    assert str(image) in str(info.value)
    blob = image.read_bytes()
    image.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BenchmarkInputError, match="could not be read") as info:
        resolve_task_data(get_task("btcv"), data_root=root, cache_dir=tmp_path / "cache")
    assert str(image) in str(info.value)


# ---- data sources -----------------------------------------------------------------------------------
def test_resolve_user_data(brats_root, tmp_path):
    """resolve_task_data on a real-layout folder returns its checked cases, not synthetic."""
    td = resolve_task_data(get_task("brats"), data_root=brats_root, cache_dir=tmp_path / "cache")
    assert td.synthetic is False and td.root == brats_root
    assert len(td.cases) == 4 and td.fingerprint
    assert not list((tmp_path / "cache").rglob("*.nii*"))  # user data is never copied into the cache


def test_fingerprint_changes_when_data_changes(btcv_root, tmp_path):
    """The data fingerprint (part of the pretraining cache key) changes when a file changes."""
    root = _copy(btcv_root, tmp_path / "data")
    task = get_task("btcv")
    first = resolve_task_data(task, data_root=root, cache_dir=tmp_path / "cache").fingerprint
    assert resolve_task_data(task, data_root=root, cache_dir=tmp_path / "cache").fingerprint == first
    data = np.asarray(nib.load(str(root / "imagesTr" / "img0001.nii.gz")).dataobj)[:, :, :8].copy()
    label = np.asarray(nib.load(str(root / "labelsTr" / "label0001.nii.gz")).dataobj)[:, :, :8].copy()
    save_nifti(data, root / "imagesTr" / "img0001.nii.gz")
    save_nifti(label, root / "labelsTr" / "label0001.nii.gz")
    assert resolve_task_data(task, data_root=root, cache_dir=tmp_path / "cache").fingerprint != first


@pytest.mark.parametrize("name", ["brats", "btcv"])
def test_synthetic_data_written_once_in_real_layout(name, tmp_path, monkeypatch):
    """Without --data-root the synthetic set is written into the cache once and read by the real reader."""
    task = get_task(name)
    monkeypatch.setattr(type(task), "synthetic_cases", 3)
    monkeypatch.setattr(type(task), "synthetic_shape", SHAPE)
    td = resolve_task_data(task, data_root=None, cache_dir=tmp_path)
    assert td.synthetic is True and len(td.cases) == 3
    assert td.root.parent == tmp_path / "synthetic"
    assert not [p for p in td.root.parent.iterdir() if p.name.startswith(".")]  # no temp folder left
    stamp = {p: p.stat().st_mtime_ns for p in td.root.rglob("*.nii.gz")}
    again = synthetic_root(task, tmp_path)
    assert again == td.root
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*.nii.gz")} == stamp
    volume = task.load(td.cases[0])
    assert volume.image.shape == (len(task.channels), *SHAPE)
