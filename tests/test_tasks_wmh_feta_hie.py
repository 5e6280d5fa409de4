"""WMH 2017, FeTA 2021 and BONBID-HIE readers (tasks/wmh.py, feta.py, hie.py): layouts, round trips, bad input."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import tasks.feta  # noqa: F401  (registration)
import tasks.hie  # noqa: F401
import tasks.wmh  # noqa: F401
from benchmark.augmentations import mixup
from benchmark.data import load_volumes
from benchmark.datasources import resolve_task_data, synthetic_root
from benchmark.errors import BenchmarkInputError
from tasks import get_task
from tasks.hie import BACKGROUND
from tasks.metrics import lesion_size_bucket
from tasks.nifti import save_nifti
from benchmark.kinds import kind_of

SHAPE = (32, 32, 16)
NAMES = ("wmh", "feta", "hie")
N_CASES = {"wmh": 4, "feta": 3, "hie": 5}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name in NAMES:
        out[name] = tmp_path_factory.mktemp(name)
        get_task(name).write_synthetic(out[name], n_cases=N_CASES[name], shape=SHAPE, seed=0)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _raw(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def _check(name: str, root: Path) -> None:
    task = get_task(name)
    task.check_cases(task.find_cases(root), root=root)


# ---- layouts ------------------------------------------------------------------------------------
def test_synthetic_layouts(roots):
    """Each synthetic set is written in its dataset's own layout."""
    assert _files(roots["wmh"]) == {
        f"{site}/{subject}/{name}" for site, subject in [("Utrecht", 0), ("Singapore", 50), ("GE3T", 100), ("Utrecht", 1)]
        for name in ("pre/T1.nii.gz", "pre/FLAIR.nii.gz", "wmh.nii.gz")
    }
    assert _files(roots["feta"]) == {
        f"sub-{i:03d}/anat/sub-{i:03d}_rec-{rec}_{kind}.nii.gz" for i, rec in [(1, "mial"), (2, "irtk"), (3, "mial")] for kind in ("T2w", "dseg")
    }
    assert _files(roots["hie"]) == {
        path for i in range(1, 6) for path in (
            f"1ADC_ss/MGHNICU_{i:03d}-VISIT_01-ADC_ss.nii.gz",
            f"2Z_ADC/Zmap_MGHNICU_{i:03d}-VISIT_01-ADC_smooth2mm_clipped10.nii.gz",
            f"3LABEL/MGHNICU_{i:03d}-VISIT_01_lesion.nii.gz",
        )
    }


def test_find_cases_ids_and_channel_order(roots):
    """Images come in the task's channel order: WMH (T1, FLAIR), FeTA (T2w), HIE (ADC, Z_ADC)."""
    wmh = get_task("wmh").find_cases(roots["wmh"])
    assert [c.case_id for c in wmh] == ["GE3T-100", "Singapore-50", "Utrecht-0", "Utrecht-1"]
    for case in wmh:
        assert [p.relative_to(case.label.parent).as_posix() for p in case.images] == ["pre/T1.nii.gz", "pre/FLAIR.nii.gz"]
        assert case.label.name == "wmh.nii.gz"
    feta = get_task("feta").find_cases(roots["feta"])
    assert [c.case_id for c in feta] == ["sub-001_rec-mial", "sub-002_rec-irtk", "sub-003_rec-mial"]
    assert [c.label.name for c in feta] == [f"{c.case_id}_dseg.nii.gz" for c in feta]
    hie = get_task("hie").find_cases(roots["hie"])
    assert [c.case_id for c in hie] == [f"MGHNICU_{i:03d}-VISIT_01" for i in range(1, 6)]
    for case in hie:
        assert [p.parent.name for p in case.images] == ["1ADC_ss", "2Z_ADC"] and case.label.parent.name == "3LABEL"
    assert get_task("wmh").channels == ("T1", "FLAIR") and get_task("hie").channels == ("ADC", "Z_ADC")


def test_wmh_finds_subjects_grouped_by_scanner(roots, tmp_path):
    """The WMH test set nests subjects one level deeper (Amsterdam/GE1T5/<subject>); they are found."""
    shutil.copytree(roots["wmh"] / "Utrecht" / "0", tmp_path / "Amsterdam" / "GE1T5" / "137")
    shutil.copytree(roots["wmh"] / "GE3T" / "100", tmp_path / "Amsterdam" / "Philips" / "144")
    cases = get_task("wmh").find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["Amsterdam-GE1T5-137", "Amsterdam-Philips-144"]


# ---- reading back ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_round_trip_through_the_reader(name, roots):
    """check_cases passes; load() gives image [C, *shape] float32, the RAS-reoriented label and header spacing."""
    task, root = get_task(name), roots[name]
    cases = task.find_cases(root)
    task.check_cases(cases, root=root)
    seen = set()
    for case in cases:
        volume = task.load(case)
        assert volume.image.shape == (len(task.channels), *SHAPE) and volume.image.dtype == np.float32
        assert np.isfinite(volume.image).all()
        canonical = nib.as_closest_canonical(nib.load(str(case.label)))
        np.testing.assert_array_equal(volume.label, np.asarray(canonical.dataobj))
        expected = tuple(np.linalg.norm(canonical.affine[:3, :3], axis=0))
        assert volume.spacing == pytest.approx(expected)
        seen |= set(np.unique(volume.label).tolist())
    assert seen <= set(task.label_values) and len(seen) >= 2


def test_hie_reader_reorients_lps_style_headers_to_ras(roots):
    """Synthetic HIE files carry a NIfTI affine with x and y flipped (as converted from the release's LPS .mha):
    the reader flips the arrays back to RAS; spacing is the 160 x 160 x 120 mm field of view over this grid."""
    case = get_task("hie").find_cases(roots["hie"])[1]
    raw, affine = _raw(case.label)
    assert affine[0, 0] < 0 and affine[1, 1] < 0
    volume = get_task("hie").load(case)
    np.testing.assert_array_equal(volume.label, raw[::-1, ::-1, :])
    assert volume.spacing == pytest.approx((160 / 32, 160 / 32, 120 / 16))


def test_spacing_and_orientation_come_from_the_header(roots, tmp_path):
    """A sagittally stored volume (array axes = A, S, R at 2, 1.5, 3 mm) is read as RAS with spacing (3, 2, 1.5)."""
    root = _copy(roots["feta"], tmp_path / "data")
    case = get_task("feta").find_cases(root)[0]
    affine = np.array([[0, 0, 3.0, -40], [2.0, 0, 0, -60], [0, 1.5, 0, -20], [0, 0, 0, 1]])
    image, label = _raw(case.images[0])[0], _raw(case.label)[0]
    stored_image, stored_label = np.transpose(image, (1, 2, 0)), np.transpose(label, (1, 2, 0))  # RAS -> ASR axes
    save_nifti(stored_image, case.images[0], affine=affine)
    save_nifti(stored_label, case.label, affine=affine)
    get_task("feta").check_cases([case], root=root)
    volume = get_task("feta").load(case)
    assert volume.spacing == pytest.approx((3.0, 2.0, 1.5))
    np.testing.assert_array_equal(volume.label, label)  # back in R, A, S order


@pytest.mark.parametrize("name", NAMES)
def test_load_volumes_resampling_updates_spacing(name, roots):
    """Resampling to the smoke grid keeps the field of view: spacing × old / new voxels; untouched at the same size."""
    task = get_task(name)
    cases = task.find_cases(roots[name])[:1]
    native = task.load(cases[0])
    (small,) = load_volumes(task, cases, volume_size=(16, 16, 4))
    assert small.image.shape[1:] == (16, 16, 4) and small.label.shape == (16, 16, 4)
    assert small.spacing == pytest.approx((native.spacing[0] * 2, native.spacing[1] * 2, native.spacing[2] * 4))
    (same,) = load_volumes(task, cases, volume_size=SHAPE)
    assert same.spacing == native.spacing


# ---- task conventions -----------------------------------------------------------------------------
def test_wmh_synthetic_has_lesions_and_other_pathology(roots):
    """Every synthetic WMH subject has label-1 lesions; label 2 (other pathology) appears in some."""
    labels = [_raw(c.label)[0] for c in get_task("wmh").find_cases(roots["wmh"])]
    assert all((label == 1).any() for label in labels)
    assert any((label == 2).any() for label in labels)


def test_wmh_label_2_is_ignored_by_the_metrics():
    """Predicted voxels on label 2 change nothing (the challenge masks them out of the prediction)."""
    wmh = get_task("wmh")
    label = torch.zeros(1, 1, 10, 10, 6, dtype=torch.long)
    label[0, 0, 2:4, 2:4, 2] = 1
    label[0, 0, 6:8, 6:8, 3] = 2
    true = wmh.label_to_regions(label)
    assert not true[label == 2].any()
    exact = wmh.metrics(true.clone(), true, spacing=(1.0, 1.0, 3.0), label=label)
    on_other = wmh.metrics(true | (label == 2), true, spacing=(1.0, 1.0, 3.0), label=label)
    assert on_other == exact and exact["dice_wmh"] == 1.0 and exact["hd95_wmh"] == 0.0
    unmasked = wmh.metrics(true | (label == 2), true, spacing=(1.0, 1.0, 3.0))  # without the label: a false positive
    assert unmasked["dice_wmh"] < 1.0


def test_wmh_label_2_is_ignored_by_the_loss():
    """The loss target weights label-2 voxels 0: the loss and its gradient there do not depend on the logits."""
    wmh = get_task("wmh")
    label = torch.zeros(2, 1, 8, 8, 4, dtype=torch.long)
    label[:, :, 1:3, 1:3, 1] = 1
    label[:, :, 5:7, 5:7, 2] = 2
    target = wmh.loss_target(label)
    assert target.shape == (2, 2, 8, 8, 4)
    assert torch.equal(target[:, 0:1], (label == 1).float()) and torch.equal(target[:, 1:2], (label != 2).float())
    loss_fn = wmh.make_loss()
    logits = torch.randn(2, wmh.num_outputs, 8, 8, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = loss_fn(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad[label == 2].abs().max() == 0 and logits.grad[label != 2].abs().max() > 0
    changed = logits.detach().clone()
    changed[label == 2] = 50.0  # "confidently WMH" on other pathology
    assert loss_fn(changed, target).item() == pytest.approx(loss.item())
    _, blended = mixup(torch.zeros(2, 2, 8, 8, 4), target, alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(loss_fn(logits.detach(), blended))


@pytest.mark.parametrize("name", ["feta", "hie"])
def test_loss_on_task_targets(name):
    """FeTA and HIE train with the default softmax DiceCE on one-hot targets of num_outputs channels."""
    task = get_task(name)
    label = torch.tensor(task.label_values)[torch.randint(len(task.label_values), (2, 1, 8, 8, 4), generator=torch.Generator().manual_seed(0))]
    target = task.loss_target(label)
    assert target.shape == (2, task.num_outputs, 8, 8, 4)
    assert torch.isfinite(task.make_loss()(torch.randn(2, task.num_outputs, 8, 8, 4), target))
    regions = task.logits_to_regions(target * 10)
    assert torch.equal(regions, task.label_to_regions(label))


def test_feta_regions_and_unit_interval(roots):
    """FeTA: seven tissue regions (label k -> region k-1); T2w min-max scaled to exactly [0, 1]."""
    feta = get_task("feta")
    assert feta.region_names == ("external_csf", "grey_matter", "white_matter", "ventricles", "cerebellum", "deep_grey_matter", "brainstem")
    regions = feta.label_to_regions(torch.arange(8).view(1, 1, 8, 1, 1))
    assert regions.shape == (1, 7, 8, 1, 1)
    assert [regions[0, k, :, 0, 0].nonzero().flatten().tolist() for k in range(7)] == [[k + 1] for k in range(7)]
    image = feta.load(feta.find_cases(roots["feta"])[0]).image
    assert image.min() == 0.0 and image.max() == pytest.approx(1.0)
    labels = _raw(feta.find_cases(roots["feta"])[0].label)[0]
    assert set(np.unique(labels).tolist()) == set(range(8))  # all seven tissues are drawn


def test_hie_normalisation_brain_zscore_background_minus_6(roots):
    """HIE: both maps z-scored over the brain (ADC > 0); everything else exactly −6."""
    hie = get_task("hie")
    case = hie.find_cases(roots["hie"])[0]
    adc = nib.as_closest_canonical(nib.load(str(case.images[0]))).get_fdata()
    image = hie.load(case).image
    brain = adc > 0
    assert (image[:, ~brain] == BACKGROUND).all()
    for c in range(2):
        assert abs(image[c][brain].mean()) < 1e-3 and image[c][brain].std() == pytest.approx(1.0, abs=1e-3)


def test_hie_synthetic_lesion_sizes_cover_every_group(roots):
    """The synthetic HIE cases include a case without lesion and lesions in each size group (< 1 %, 1-5 %, > 5 %)."""
    groups, empty = [], 0
    for case in get_task("hie").find_cases(roots["hie"]):
        adc, label = _raw(case.images[0])[0], _raw(case.label)[0]
        empty += int(not label.any())
        groups.append(lesion_size_bucket(100.0 * label.sum() / (adc > 0).sum()))
    assert empty >= 1 and {"lt1", "1to5", "gt5"} <= set(groups)


# ---- bad input ------------------------------------------------------------------------------------
def test_wmh_missing_modality_names_the_expected_file(roots, tmp_path):
    root = _copy(roots["wmh"], tmp_path / "data")
    (root / "Singapore" / "50" / "pre" / "T1.nii.gz").unlink()
    with pytest.raises(BenchmarkInputError) as info:
        get_task("wmh").find_cases(root)
    assert str(root / "Singapore" / "50" / "pre" / "T1.nii.gz") in str(info.value) and "'T1'" in str(info.value)


def test_hie_missing_z_adc_names_the_expected_file(roots, tmp_path):
    root = _copy(roots["hie"], tmp_path / "data")
    missing = root / "2Z_ADC" / "Zmap_MGHNICU_003-VISIT_01-ADC_smooth2mm_clipped10.nii.gz"
    missing.unlink()
    with pytest.raises(BenchmarkInputError) as info:
        get_task("hie").find_cases(root)
    assert str(missing) in str(info.value)


def test_feta_missing_segmentation_names_the_expected_file(roots, tmp_path):
    root = _copy(roots["feta"], tmp_path / "data")
    missing = root / "sub-002" / "anat" / "sub-002_rec-irtk_dseg.nii.gz"
    missing.unlink()
    with pytest.raises(BenchmarkInputError) as info:
        get_task("feta").find_cases(root)
    assert str(missing) in str(info.value)


def test_label_shape_mismatch_names_the_label(roots, tmp_path):
    root = _copy(roots["feta"], tmp_path / "data")
    label = root / "sub-003" / "anat" / "sub-003_rec-mial_dseg.nii.gz"
    save_nifti(np.zeros((32, 32, 8), dtype=np.uint8), label, affine=_raw(label)[1])
    with pytest.raises(BenchmarkInputError) as info:
        _check("feta", root)
    assert str(label) in str(info.value) and "shape" in str(info.value)


@pytest.mark.parametrize("name, relative", [("hie", "3LABEL/MGHNICU_002-VISIT_01_lesion.nii.gz"), ("wmh", "Utrecht/1/pre/T1.nii.gz")])
def test_affine_mismatch_names_both_files(name, relative, roots, tmp_path):
    """Same shape, other affine (origin moved 5 mm): stops naming the label and the image, 'expected the same affine'."""
    root = _copy(roots[name], tmp_path / "data")
    path = root / relative
    data, affine = _raw(path)
    moved = affine.copy()
    moved[0, 3] += 5.0
    save_nifti(data, path, affine=moved)
    case = next(c for c in get_task(name).find_cases(root) if path in (*c.images, c.label))
    with pytest.raises(BenchmarkInputError, match="expected the same affine") as info:
        _check(name, root)
    assert str(case.label) in str(info.value) and str(case.images[0] if path == case.label else path) in str(info.value)


def test_float_rounding_of_the_affine_is_tolerated(roots, tmp_path):
    """Affines equal up to float32 header rounding (1e-5 mm) are the same grid."""
    root = _copy(roots["hie"], tmp_path / "data")
    path = root / "3LABEL" / "MGHNICU_001-VISIT_01_lesion.nii.gz"
    data, affine = _raw(path)
    save_nifti(data, path, affine=affine + 1e-5 * np.eye(4))
    _check("hie", root)


@pytest.mark.parametrize("name, relative, value", [
    ("wmh", "Utrecht/0/wmh.nii.gz", 3),
    ("feta", "sub-001/anat/sub-001_rec-mial_dseg.nii.gz", 9),
    ("hie", "3LABEL/MGHNICU_004-VISIT_01_lesion.nii.gz", 2),
])
def test_unknown_label_value_names_file_and_value(name, relative, value, roots, tmp_path):
    root = _copy(roots[name], tmp_path / "data")
    path = root / relative
    data, affine = _raw(path)
    data = data.copy()
    data[0, 0, 0] = value
    save_nifti(data, path, affine=affine)
    with pytest.raises(BenchmarkInputError) as info:
        _check(name, root)
    assert str(path) in str(info.value) and re.search(rf"\[{value}(\.0)?\]", str(info.value))


@pytest.mark.parametrize("name, relative", [
    ("hie", "2Z_ADC/Zmap_MGHNICU_005-VISIT_01-ADC_smooth2mm_clipped10.nii.gz"),
    ("wmh", "GE3T/100/wmh.nii.gz"),
    ("feta", "sub-002/anat/sub-002_rec-irtk_T2w.nii.gz"),
])
def test_truncated_file_stops_before_training(name, relative, roots, tmp_path):
    """A truncated .nii.gz is caught by resolve_task_data (before any training), naming the file."""
    root = _copy(roots[name], tmp_path / "data")
    path = root / relative
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task(name), data_root=root, cache_dir=tmp_path / "cache")
    assert str(path) in str(info.value)


def test_nan_intensity_stops_before_training(roots, tmp_path):
    root = _copy(roots["hie"], tmp_path / "data")
    path = root / "1ADC_ss" / "MGHNICU_002-VISIT_01-ADC_ss.nii.gz"
    data, affine = _raw(path)
    data = data.astype(np.float32)
    data[3, 3, 3] = np.nan
    save_nifti(data, path, affine=affine)
    with pytest.raises(BenchmarkInputError, match="NaN") as info:
        resolve_task_data(get_task("hie"), data_root=root, cache_dir=tmp_path / "cache")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_empty_data_root(name, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task(name), data_root=empty, cache_dir=tmp_path / "cache")
    assert str(empty) in str(info.value) and "empty" in str(info.value)


@pytest.mark.parametrize("name, folder", [("wmh", "Utrecht/7"), ("feta", "sub-009"), ("hie", None)])
def test_empty_subject_folder_names_it(name, folder, roots, tmp_path):
    """An empty subject folder (or an empty 1ADC_ss) is an error naming it, never a silently skipped case."""
    if folder is None:
        root = tmp_path / "data"
        for sub in ("1ADC_ss", "2Z_ADC", "3LABEL"):
            (root / sub).mkdir(parents=True)
        empty = root / "1ADC_ss"
    else:
        root = _copy(roots[name], tmp_path / "data")
        empty = root / folder
        empty.mkdir()
    with pytest.raises(BenchmarkInputError) as info:
        get_task(name).find_cases(root)
    assert str(empty) in str(info.value)


@pytest.mark.parametrize("name, expected", [("wmh", "wmh.nii.gz"), ("feta", "sub-XXX"), ("hie", "1ADC_ss")])
def test_folder_without_the_layout_names_the_layout(name, expected, tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(BenchmarkInputError) as info:
        resolve_task_data(get_task(name), data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert str(tmp_path) in str(info.value) and expected in str(info.value)


# ---- data sources -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_synthetic_data_written_once_and_read_by_the_real_reader(name, tmp_path, monkeypatch):
    task = get_task(name)
    monkeypatch.setattr(type(task), "synthetic_cases", 3)
    monkeypatch.setattr(type(task), "synthetic_shape", SHAPE)
    td = resolve_task_data(task, data_root=None, cache_dir=tmp_path)
    assert td.synthetic is True and len(td.cases) == 3
    assert synthetic_root(task, tmp_path) == td.root
    assert task.load(td.cases[0]).image.shape == (len(task.channels), *SHAPE)


@pytest.mark.parametrize("name", NAMES)
def test_registered_synthetic_defaults(name):
    """Built-in sets: 12-16 cases on a grid no larger than the smoke profile's 64 x 64 x 32."""
    task = get_task(name)
    assert 12 <= task.synthetic_cases <= 16
    assert all(n <= m for n, m in zip(task.synthetic_shape, (64, 64, 32)))
    assert task.description and set(task.label_values) >= {0, 1}


# ---- evaluation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, spatial_dims", [("wmh", 3), ("hie", 2), ("feta", 3)])
def test_evaluate_reports_each_tasks_metrics_per_case(name, spatial_dims, roots):
    """benchmark.train.evaluate calls task.metrics with the volume's spacing, image and label: one row per metric,
    each a metric the task declares (metrics.csv)."""
    from benchmark.train import evaluate

    task = get_task(name)
    volumes = load_volumes(task, task.find_cases(roots[name])[:2], volume_size=(16, 16, 8))
    conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
    model = conv(len(task.channels), task.num_outputs, kernel_size=1)
    rows = evaluate(model, task, volumes, roi=(16, 16, 8)[:spatial_dims], device="cpu")
    assert {r.case_id for r in rows} == {v.case_id for v in volumes}
    metrics = {r.metric for r in rows}
    assert {"dice_mean", "hd95_mean"} <= metrics and all(isinstance(r.value, float) for r in rows)
    assert {m for m in metrics if not m.startswith("empty_pred_")} <= {i.name for i in kind_of(task).metric_info(task)}  # + flags
    extra = {"wmh": {"lesion_recall"}, "hie": {"masd", "nsd"}, "feta": {"dice_brainstem", "hd95_brainstem"}}[name]
    assert extra <= metrics
