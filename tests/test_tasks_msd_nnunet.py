"""MSD Task01_BrainTumour (tasks/msd_brain.py) and bring-your-own nnU-Net datasets (tasks/nnunet.py):
layouts written and read back, ``nnunet:PATH`` through get_task / cli / plan, and every bad input."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.datasources import resolve_task_data
from benchmark.errors import BenchmarkInputError
from tasks import get_task
from tasks.msd_brain import BRATS_ORDER, BRATS_TO_MSD
from tasks.nifti import save_nifti
from tasks.nnunet import NnUNetTask, normalize_channel
from tasks.synthetic import brats_subject

SHAPE = (24, 24, 12)


@pytest.fixture(scope="module")
def msd_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("Task01_BrainTumour")
    get_task("msd_brain").write_synthetic(root, n_cases=3, shape=SHAPE, seed=0)
    return root


@pytest.fixture(scope="module")
def nn_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw") / "Dataset900_Synth"
    get_task("nnunet:synthetic").write_synthetic(root, n_cases=3, shape=SHAPE, seed=0)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _check_error(task_name: str, root: Path) -> str:
    """The message of the BenchmarkInputError that the up-front check of ``root`` raises."""
    task = get_task(task_name)
    with pytest.raises(BenchmarkInputError) as info:
        task.check_cases(task.find_cases(root), root=root)
    return str(info.value)


def _edit_json(root: Path, **changes) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(changes)
    (root / "dataset.json").write_text(json.dumps(meta))


def _nifti(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def _resave(path: Path, data: np.ndarray) -> None:
    """Overwrite ``path`` with ``data``, keeping its affine (so only the intended defect is introduced)."""
    save_nifti(data, path, affine=nib.load(str(path)).affine)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# ---- msd_brain: layout and round trip ------------------------------------------------------------
def test_msd_synthetic_layout_and_dataset_json(msd_root):
    """Written like the real MSD tar: dataset.json + imagesTr/BRATS_XXX.nii.gz (4D) + labelsTr/BRATS_XXX.nii.gz."""
    cases = [f"BRATS_{i:03d}.nii.gz" for i in (1, 2, 3)]
    assert _files(msd_root) == {"dataset.json"} | {f"imagesTr/{c}" for c in cases} | {f"labelsTr/{c}" for c in cases}
    meta = json.loads((msd_root / "dataset.json").read_text())
    assert meta["modality"] == {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    assert meta["labels"] == {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    assert meta["training"][0] == {"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}
    assert nib.load(str(msd_root / "imagesTr" / cases[0])).shape == (*SHAPE, 4)


def test_msd_synthetic_uses_msd_label_and_channel_conventions(msd_root):
    """BraTS 2 edema -> 1, 1 necrotic -> 2, 4 enhancing -> 3; channels FLAIR, T1w, T1gd, T2w from t1, t1ce, t2, flair."""
    image, label = brats_subject(SHAPE, np.random.default_rng(0))  # the first synthetic case
    np.testing.assert_array_equal(_nifti(msd_root / "labelsTr" / "BRATS_001.nii.gz"), BRATS_TO_MSD[label])
    assert set(np.unique(BRATS_TO_MSD[label])) == {0, 1, 2, 3}
    written = _nifti(msd_root / "imagesTr" / "BRATS_001.nii.gz")
    for msd_channel, brats_channel in enumerate(BRATS_ORDER):
        np.testing.assert_allclose(written[..., msd_channel], image[brats_channel])
    assert [("t1", "t1ce", "t2", "flair")[c] for c in BRATS_ORDER] == ["flair", "t1", "t1ce", "t2"]


def test_msd_round_trip_regions_nested(msd_root):
    """find_cases -> check_cases -> load: image [4, X, Y, Z], labels in {0..3}, ET ⊂ TC ⊂ WT."""
    task = get_task("msd_brain")
    cases = task.find_cases(msd_root)
    task.check_cases(cases, root=msd_root)
    assert [c.case_id for c in cases] == ["BRATS_001", "BRATS_002", "BRATS_003"]
    for case in cases:
        assert case.channels_last and len(case.images) == 1
        volume = task.load(case)
        assert volume.image.shape == (4, *SHAPE) and volume.image.dtype == np.float32
        assert set(np.unique(volume.label)) <= set(task.label_values)
        regions = task.label_to_regions(torch.from_numpy(volume.label)[None, None])[0]  # [3, X, Y, Z]
        wt, tc, et = regions
        assert et.any() and (tc & ~et).any() and (wt & ~tc).any()
        assert not (et & ~tc).any() and not (tc & ~wt).any()
    foreground = (volume.image != 0).any(axis=0)
    assert abs(volume.image[0][foreground].mean()) < 1e-3  # per-channel z-score over the brain, like BraTS


def test_msd_reads_nnunet_v1_and_v2_conversions(msd_root, tmp_path):
    """The nnU-Net v1 conversion (same dataset.json, BRATS_XXX_0000..0003.nii.gz) loads to the same arrays; v2 too."""
    root = _copy(msd_root, tmp_path / "Task001_BrainTumour")
    for image in sorted((root / "imagesTr").glob("BRATS_*.nii.gz")):
        data, img = _nifti(image), nib.load(str(image))
        for c in range(4):
            save_nifti(data[..., c], image.parent / image.name.replace(".nii.gz", f"_{c:04d}.nii.gz"), affine=img.affine)
        image.unlink()
    (root / "imagesTr" / "._BRATS_001_0000.nii.gz").write_bytes(b"AppleDouble junk")  # macOS tar leftovers are ignored
    task = get_task("msd_brain")
    split = task.find_cases(root)
    assert [p.name for p in split[0].images] == [f"BRATS_001_{c:04d}.nii.gz" for c in range(4)]
    original = task.find_cases(msd_root)
    np.testing.assert_allclose(task.load(split[0]).image, task.load(original[0]).image)
    # nnU-Net v2 conversion (Dataset001_BrainTumour): channel_names, name -> value labels, no training list.
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}, "file_ending": ".nii.gz", "numTraining": 3,
        "labels": {"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3},
    }))
    assert [c.images for c in task.find_cases(root)] == [c.images for c in split]


# ---- msd_brain: bad input ------------------------------------------------------------------------
def test_msd_missing_dataset_json_names_expected_path(msd_root, tmp_path):
    root = _copy(msd_root, tmp_path / "data")
    (root / "dataset.json").unlink()
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task("msd_brain"), data_root=root, cache_dir=tmp_path / "cache")
    assert str(root / "dataset.json") in str(info.value) and "not found" in str(info.value)


def test_msd_listed_file_missing_names_file_and_dataset_json(msd_root, tmp_path):
    root = _copy(msd_root, tmp_path / "data")
    (root / "imagesTr" / "BRATS_002.nii.gz").unlink()
    with pytest.raises(BenchmarkInputError) as info:
        get_task("msd_brain").find_cases(root)
    message = str(info.value)
    assert str(root / "imagesTr" / "BRATS_002.nii.gz") in message and str(root / "dataset.json") in message


def test_msd_listed_label_missing_names_it(msd_root, tmp_path):
    root = _copy(msd_root, tmp_path / "data")
    (root / "labelsTr" / "BRATS_003.nii.gz").unlink()
    with pytest.raises(BenchmarkInputError, match=re.escape(str(root / "labelsTr" / "BRATS_003.nii.gz"))):
        get_task("msd_brain").find_cases(root)


def test_msd_wrong_channel_count_names_file(msd_root, tmp_path):
    """A 4D image with 3 channels instead of 4 -> error naming the file and the 4 expected channels."""
    root = _copy(msd_root, tmp_path / "data")
    image = root / "imagesTr" / "BRATS_001.nii.gz"
    _resave(image, _nifti(image)[..., :3])
    task = get_task("msd_brain")
    cases = task.find_cases(root)
    with pytest.raises(BenchmarkInputError) as info:
        task.check_cases(cases, root=root)
    assert str(image) in str(info.value) and "4" in str(info.value) and "FLAIR" in str(info.value)
    with pytest.raises(BenchmarkInputError, match=re.escape(str(image))):
        task.load(cases[0])


def test_msd_label_shape_mismatch_names_label(msd_root, tmp_path):
    root = _copy(msd_root, tmp_path / "data")
    label = root / "labelsTr" / "BRATS_002.nii.gz"
    _resave(label, np.zeros((24, 24, 6), dtype=np.uint8))
    message = _check_error("msd_brain", root)
    assert str(label) in message and "shape" in message


def test_msd_label_affine_mismatch_names_label(msd_root, tmp_path):
    """A label on the same grid but another voxel size than its 4D image -> error naming the label."""
    root = _copy(msd_root, tmp_path / "data")
    label = root / "labelsTr" / "BRATS_003.nii.gz"
    save_nifti(_nifti(label), label, affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    message = _check_error("msd_brain", root)
    assert str(label) in message and "affine" in message


def test_msd_brats_label_value_rejected(msd_root, tmp_path):
    """Value 4 (BraTS's enhancing tumour, not an MSD value) -> error naming the file and the value."""
    root = _copy(msd_root, tmp_path / "data")
    label = root / "labelsTr" / "BRATS_001.nii.gz"
    data = _nifti(label).copy()
    data[0, 0, 0] = 4
    _resave(label, data)
    message = _check_error("msd_brain", root)
    assert str(label) in message and re.search(r"\[4(\.0)?\]", message)


def test_msd_other_task_dataset_json_rejected(msd_root, tmp_path):
    """Pointing msd_brain at another MSD task (one CT channel) -> error naming dataset.json and the channels."""
    root = _copy(msd_root, tmp_path / "data")
    _edit_json(root, modality={"0": "CT"})
    with pytest.raises(BenchmarkInputError) as info:
        get_task("msd_brain").find_cases(root)
    assert str(root / "dataset.json") in str(info.value) and "FLAIR" in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "nan"])
def test_msd_truncated_or_nan_image_stops_up_front(damage, msd_root, tmp_path):
    root = _copy(msd_root, tmp_path / "data")
    image = root / "imagesTr" / "BRATS_003.nii.gz"
    if damage == "truncated":
        blob = image.read_bytes()
        image.write_bytes(blob[: len(blob) // 2])
    else:
        data = _nifti(image).astype(np.float32)
        data[5, 5, 5, 2] = np.nan
        _resave(image, data)
    with pytest.raises(BenchmarkInputError, match="could not be read" if damage == "truncated" else "NaN") as info:
        resolve_task_data(get_task("msd_brain"), data_root=root, cache_dir=tmp_path / "cache")
    assert str(image) in str(info.value)


def test_msd_empty_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchmarkInputError, match="empty"):
        resolve_task_data(get_task("msd_brain"), data_root=empty, cache_dir=tmp_path / "cache")


# ---- nnunet:PATH: the task from dataset.json ------------------------------------------------------
def test_nnunet_synthetic_layout(nn_root):
    """nnU-Net v2 raw layout: imagesTr/<case>_000C.nii.gz per channel, labelsTr/<case>.nii.gz, dataset.json."""
    images = {f"imagesTr/Synth_{i:03d}_{c:04d}.nii.gz" for i in range(3) for c in range(2)}
    labels = {f"labelsTr/Synth_{i:03d}.nii.gz" for i in range(3)}
    assert _files(nn_root) == {"dataset.json"} | images | labels
    meta = json.loads((nn_root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1gd", "1": "FLAIR"} and meta["numTraining"] == 3 and meta["file_ending"] == ".nii.gz"


def test_get_task_nnunet_path_builds_task_from_dataset_json(nn_root):
    task = get_task("nnunet:" + str(nn_root))
    assert isinstance(task, NnUNetTask)
    assert task.name == "nnunet:Dataset900_Synth" and task.ref == f"nnunet:{nn_root.resolve()}"
    assert task.default_data_root == nn_root.resolve()
    assert task.channels == ("T1gd", "FLAIR") and task.label_values == (0, 1, 2, 3)
    assert task.region_names == ("edema", "non_enhancing", "enhancing") and task.multilabel is False
    assert get_task(task.ref).spec == task.spec  # a worker rebuilds the same task from the ref


def test_nnunet_round_trip(nn_root):
    """find_cases -> check_cases -> load: image [2, X, Y, Z] z-scored, labels in the task's set, one-hot targets."""
    task = get_task("nnunet:" + str(nn_root))
    cases = task.find_cases(nn_root)
    task.check_cases(cases, root=nn_root)
    assert [c.case_id for c in cases] == ["Synth_000", "Synth_001", "Synth_002"]
    assert [p.name for p in cases[0].images] == ["Synth_000_0000.nii.gz", "Synth_000_0001.nii.gz"]
    volume = task.load(cases[0])
    assert volume.image.shape == (2, *SHAPE) and volume.image.dtype == np.float32
    assert set(np.unique(volume.label)) == {0, 1, 2, 3}
    label = torch.from_numpy(volume.label)[None, None]
    assert task.loss_target(label).shape == (1, 4, *SHAPE)
    regions = task.label_to_regions(label)[0]
    for k, value in enumerate((1, 2, 3)):
        assert torch.equal(regions[k], label[0, 0] == value)


def test_nnunet_synthetic_builtin_through_datasources(tmp_path, monkeypatch):
    """nnunet:synthetic has no folder: written once into the cache in nnU-Net layout and read back."""
    task = get_task("nnunet:synthetic")
    monkeypatch.setattr(NnUNetTask, "synthetic_cases", 3)
    monkeypatch.setattr(NnUNetTask, "synthetic_shape", SHAPE)
    td = resolve_task_data(task, data_root=None, cache_dir=tmp_path)
    assert td.synthetic and len(td.cases) == 3 and (td.root / "dataset.json").is_file()
    assert task.load(td.cases[0]).image.shape == (2, *SHAPE)


def test_nnunet_v1_dataset_json(nn_root, tmp_path):
    """nnU-Net v1 / MSD dataset.json ('modality', value -> name 'labels', 'training' list) with split files."""
    root = _copy(nn_root, tmp_path / "Task900_Synth")
    training = [{"image": f"./imagesTr/Synth_{i:03d}.nii.gz", "label": f"./labelsTr/Synth_{i:03d}.nii.gz"} for i in range(3)]
    (root / "dataset.json").write_text(json.dumps({
        "modality": {"0": "T1gd", "1": "FLAIR"}, "labels": {"0": "background", "1": "edema", "2": "core"}, "training": training,
    }))
    task = get_task(f"nnunet:{root}")
    assert task.region_names == ("edema", "core") and task.label_values == (0, 1, 2)
    assert [len(c.images) for c in task.find_cases(root)] == [2, 2, 2]


def test_nnunet_v2_dataset_mapping(nn_root, tmp_path):
    """nnU-Net v2's optional "dataset" mapping (case -> images, label; relative or absolute paths) is followed."""
    root = _copy(nn_root, tmp_path / "Dataset902_Mapped")
    mapping = {f"case{i}": {"images": [f"imagesTr/Synth_{i:03d}_0000.nii.gz", str(root / f"imagesTr/Synth_{i:03d}_0001.nii.gz")],
                            "label": f"labelsTr/Synth_{i:03d}.nii.gz"} for i in range(3)}
    _edit_json(root, dataset=mapping)
    cases = get_task(f"nnunet:{root}").find_cases(root)
    assert [c.case_id for c in cases] == ["case0", "case1", "case2"]
    assert cases[1].images == (root / "imagesTr/Synth_001_0000.nii.gz", root / "imagesTr/Synth_001_0001.nii.gz")


def test_nnunet_region_labels_become_multilabel_regions(nn_root, tmp_path):
    """nnU-Net region labels (lists) -> one sigmoid region each, region k = voxels whose value is in its list."""
    root = _copy(nn_root, tmp_path / "Dataset901_Regions")
    _edit_json(root, labels={"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
               regions_class_order=[1, 2, 3])
    task = get_task(f"nnunet:{root}")
    assert task.multilabel and task.region_names == ("whole_tumor", "tumor_core", "enhancing_tumor") and task.num_outputs == 3
    label = torch.from_numpy(task.load(task.find_cases(root)[0]).label)[None, None]
    wt, tc, et = task.label_to_regions(label)[0]
    assert torch.equal(wt, label[0, 0] > 0) and torch.equal(et, label[0, 0] == 3)
    assert not (et & ~tc).any() and not (tc & ~wt).any()


def test_normalize_channel_follows_nnunet_scheme_names():
    """CT: clip to the 0.5/99.5 percentiles then z-score; zscore inside the mask, 0 outside; rescale; rgb; noNorm."""
    ct = np.concatenate([np.full(500, -1000.0), np.linspace(-100, 100, 99_000), np.full(500, 3000.0)]).astype(np.float32)
    out = normalize_channel(ct, scheme="CT", mask=None)
    assert abs(out.mean()) < 1e-4 and out.std() == pytest.approx(1.0, abs=1e-4)
    assert out.max() - out.min() < 5.0  # the 3000 HU outliers were clipped before z-scoring
    mri = np.array([0.0, 0.0, 1.0, 3.0], dtype=np.float32)
    mask = mri != 0
    np.testing.assert_allclose(normalize_channel(mri, scheme="T2", mask=mask), [0.0, 0.0, -1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(normalize_channel(mri, scheme="rescale_to_0_1", mask=None), [0, 0, 1 / 3, 1], atol=1e-6)
    np.testing.assert_allclose(normalize_channel(np.array([0.0, 255.0]), scheme="rgb_to_0_1", mask=None), [0, 1])
    np.testing.assert_array_equal(normalize_channel(mri, scheme="noNorm", mask=None), mri)


# ---- nnunet:PATH through cli and plan -------------------------------------------------------------
def test_nnunet_name_and_ref_through_plan(nn_root, tmp_path):
    """Cell ids and results use the readable name; the Job carries the ref get_task rebuilds from."""
    from benchmark.cli import parse_fractions
    from benchmark.plan import MethodEntry, build_plan
    from benchmark.profiles import get_profile

    task = get_task(f"nnunet:{nn_root}")
    td = resolve_task_data(task, data_root=task.default_data_root, cache_dir=tmp_path)
    assert td.synthetic is False and td.root == nn_root.resolve()
    plan = build_plan(methods=[MethodEntry("scratch")], task_data=[td], fractions=parse_fractions("100%"), seeds=[0],
                      profile=get_profile("smoke"), cache_dir=tmp_path)
    group = plan.runnable()[0]
    assert group.task == "nnunet:Dataset900_Synth" and "|nnunet:Dataset900_Synth|" in group.cells[0].cell_id
    assert group.task_ref == task.ref and group.data_root == str(nn_root.resolve())
    assert get_task(group.task_ref).name == group.task


def test_cli_rejects_missing_nnunet_folder_before_compute(tmp_path, capsys):
    missing = tmp_path / "no" / "Dataset1_X"
    assert main(["--tasks", f"nnunet:{missing}", "--methods", "scratch", "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err


def test_cli_unknown_task_lists_nnunet_path(capsys):
    assert main(["--tasks", "nosuchtask", "--methods", "scratch"]) == 2
    assert "nnunet:PATH" in capsys.readouterr().err


def test_cli_rejects_two_nnunet_folders_with_the_same_name(nn_root, tmp_path, capsys):
    other = _copy(nn_root, tmp_path / "elsewhere" / nn_root.name)
    argv = ["--tasks", f"nnunet:{nn_root},nnunet:{other}", "--methods", "scratch", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    assert "nnunet:Dataset900_Synth" in capsys.readouterr().err


# ---- nnunet:PATH: bad input ----------------------------------------------------------------------
def test_get_task_nnunet_missing_dir_names_path():
    with pytest.raises(BenchmarkInputError) as info:
        get_task("nnunet:/no/such/dir")
    assert "/no/such/dir" in str(info.value) and "does not exist" in str(info.value)


def test_nnunet_empty_dir_names_dataset_json(tmp_path):
    """An empty folder (or any folder without dataset.json) -> error naming PATH/dataset.json and the layout."""
    (tmp_path / "Dataset2_Empty").mkdir()
    with pytest.raises(BenchmarkInputError) as info:
        get_task(f"nnunet:{tmp_path / 'Dataset2_Empty'}")
    assert str(tmp_path / "Dataset2_Empty" / "dataset.json") in str(info.value) and "imagesTr" in str(info.value)


def test_nnunet_missing_channel_file_names_it(nn_root, tmp_path):
    root = _copy(nn_root, tmp_path / "data")
    (root / "imagesTr" / "Synth_001_0001.nii.gz").unlink()
    with pytest.raises(BenchmarkInputError) as info:
        get_task(f"nnunet:{root}").find_cases(root)
    assert str(root / "imagesTr" / "Synth_001_0001.nii.gz") in str(info.value) and "channel 1" in str(info.value)


def test_nnunet_missing_label_names_expected_file(nn_root, tmp_path):
    root = _copy(nn_root, tmp_path / "data")
    (root / "labelsTr" / "Synth_002.nii.gz").unlink()
    with pytest.raises(BenchmarkInputError, match=re.escape(str(root / "labelsTr" / "Synth_002.nii.gz"))):
        get_task(f"nnunet:{root}").find_cases(root)


def test_nnunet_ignores_macos_appledouble_files(nn_root, tmp_path):
    root = _copy(nn_root, tmp_path / "data")
    for junk in ("imagesTr/._Synth_000_0000.nii.gz", "labelsTr/._Synth_000.nii.gz"):
        (root / junk).write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    task = get_task(f"nnunet:{root}")
    cases = task.find_cases(root)
    task.check_cases(cases, root=root)
    assert len(cases) == 3


def test_nnunet_num_training_mismatch(nn_root, tmp_path):
    root = _copy(nn_root, tmp_path / "data")
    _edit_json(root, numTraining=5)
    with pytest.raises(BenchmarkInputError, match="numTraining"):
        get_task(f"nnunet:{root}").find_cases(root)


def test_nnunet_label_shape_mismatch_names_label(nn_root, tmp_path):
    root = _copy(nn_root, tmp_path / "data")
    label = root / "labelsTr" / "Synth_000.nii.gz"
    _resave(label, np.zeros((12, 24, 12), dtype=np.uint8))
    message = _check_error(f"nnunet:{root}", root)
    assert str(label) in message and "shape" in message


def test_nnunet_label_value_not_in_dataset_json(nn_root, tmp_path):
    root = _copy(nn_root, tmp_path / "data")
    label = root / "labelsTr" / "Synth_001.nii.gz"
    data = _nifti(label).copy()
    data[1, 1, 1] = 7
    _resave(label, data)
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task(f"nnunet:{root}"), data_root=root, cache_dir=tmp_path / "cache")
    assert str(label) in str(info.value) and re.search(r"\[7(\.0)?\]", str(info.value))


@pytest.mark.parametrize("damage", ["truncated", "nan"])
def test_nnunet_truncated_or_nan_image_stops_up_front(damage, nn_root, tmp_path):
    root = _copy(nn_root, tmp_path / "data")
    image = root / "imagesTr" / "Synth_002_0001.nii.gz"
    if damage == "truncated":
        blob = image.read_bytes()
        image.write_bytes(blob[: len(blob) // 2])
    else:
        data = _nifti(image).astype(np.float32)
        data[3, 3, 3] = np.nan
        _resave(image, data)
    with pytest.raises(BenchmarkInputError, match="could not be read" if damage == "truncated" else "NaN") as info:
        resolve_task_data(get_task(f"nnunet:{root}"), data_root=root, cache_dir=tmp_path / "cache")
    assert str(image) in str(info.value)


def test_nnunet_data_root_of_another_dataset_rejected(nn_root, msd_root, tmp_path):
    """--data-root nnunet:A=B where B's dataset.json declares other channels -> error naming B's dataset.json."""
    with pytest.raises(BenchmarkInputError) as info:
        get_task(f"nnunet:{nn_root}").find_cases(msd_root)
    assert str(msd_root / "dataset.json") in str(info.value) and "T1gd" in str(info.value)


@pytest.mark.parametrize("labels, fragment", [
    ({"background": 0, "tumour": 1, "ignore": 2}, "ignore"),
    ({"tumour": 1}, "background"),
    ({"background": 0, "tumour": "one"}, "tumour"),
])
def test_nnunet_bad_labels_in_dataset_json(labels, fragment, nn_root, tmp_path):
    root = _copy(nn_root, tmp_path / "data")
    _edit_json(root, labels=labels)
    with pytest.raises(BenchmarkInputError) as info:
        get_task(f"nnunet:{root}")
    assert str(root / "dataset.json") in str(info.value) and fragment in str(info.value)


def test_nnunet_unsupported_file_ending(nn_root, tmp_path):
    root = _copy(nn_root, tmp_path / "data")
    _edit_json(root, file_ending=".mha")
    with pytest.raises(BenchmarkInputError, match=r"file_ending.*\.nii\.gz"):
        get_task(f"nnunet:{root}").find_cases(root)
