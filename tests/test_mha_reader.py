"""MetaImage (.mha) reading: BONBID-HIE as released reads like its NIfTI copy (tasks/nifti.py, SimpleITK).

The oracle is nibabel: the same voxels and RAS affine written once as NIfTI (nibabel) and once as MetaImage (SimpleITK,
the affine converted to ITK's LPS spacing / direction / origin) load to the identical array, affine and spacing."""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from benchmark.datasources import resolve_task_data
from benchmark.errors import BenchmarkInputError
from tasks import get_task
from tasks.nifti import load_nifti, nifti_shape, voxel_spacing

# An oblique, anisotropic, flipped affine: x flipped, y and z rotated 30 degrees, 0.8 x 1.1 x 2.5 mm, shifted origin.
_ANGLE = np.deg2rad(30.0)
AFFINE = np.array([[-0.8, 0.0, 0.0, 90.0],
                   [0.0, 1.1 * np.cos(_ANGLE), -2.5 * np.sin(_ANGLE), -40.0],
                   [0.0, 1.1 * np.sin(_ANGLE), 2.5 * np.cos(_ANGLE), 12.5],
                   [0.0, 0.0, 0.0, 1.0]])
# Axes permuted (array x -> S, y -> L, z -> P): as_closest_canonical transposes and flips; spacings 0.8, 1.1, 2.5 in
# array order become 1.1, 2.5, 0.8 along R, A, S.
PERMUTED = np.array([[0.0, -1.1, 0.0, 30.0],
                     [0.0, 0.0, -2.5, 60.0],
                     [0.8, 0.0, 0.0, -20.0],
                     [0.0, 0.0, 0.0, 1.0]])


def write_mha(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """``array`` [x, y, z] with RAS ``affine`` as an ITK image: LPS, spacing = column norms, direction = unit columns."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (lps[:3, :3] / spacing[None, :]).ravel()))
    image.SetOrigin(tuple(float(v) for v in lps[:3, 3]))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


@pytest.mark.parametrize("affine, spacing", [(AFFINE, (0.8, 1.1, 2.5)), (PERMUTED, (1.1, 2.5, 0.8))], ids=["oblique", "permuted"])
@pytest.mark.parametrize("suffix", [".mha", ".mhd"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_mha_and_nifti_of_the_same_volume_load_identically(tmp_path, dtype, suffix, affine, spacing):
    array = np.random.default_rng(0).uniform(0, 200, size=(7, 5, 3)).astype(dtype)
    nib.save(nib.Nifti1Image(array, affine), str(tmp_path / "v.nii.gz"))
    write_mha(array, affine, tmp_path / f"v{suffix}")
    a, affine_a = load_nifti(tmp_path / "v.nii.gz")
    b, affine_b = load_nifti(tmp_path / f"v{suffix}")
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(affine_a, affine_b, atol=1e-5)
    assert nifti_shape(tmp_path / f"v{suffix}") == nifti_shape(tmp_path / "v.nii.gz") == a.shape
    np.testing.assert_allclose(voxel_spacing(affine_b), voxel_spacing(affine_a), rtol=1e-6)
    np.testing.assert_allclose(voxel_spacing(affine_b), spacing, rtol=1e-5)
    ints, _ = load_nifti(tmp_path / f"v{suffix}", dtype=np.int64)
    assert ints.dtype == np.int64


@pytest.mark.parametrize("affine", [AFFINE, PERMUTED], ids=["oblique", "permuted"])
def test_reader_matches_an_independent_lps_oracle(tmp_path, affine):
    """Without nibabel on the reading side: a voxel's RAS position from the loaded affine equals its ITK physical
    point (LPS) with x and y negated, and the loaded array holds that voxel's value there."""
    array = np.arange(7 * 5 * 3, dtype=np.float32).reshape(7, 5, 3)
    write_mha(array, affine, tmp_path / "v.mha")
    image = sitk.ReadImage(str(tmp_path / "v.mha"))
    data, loaded = load_nifti(tmp_path / "v.mha")
    assert data.shape == nib.as_closest_canonical(nib.Nifti1Image(array, affine)).shape
    for index in [(0, 0, 0), (6, 4, 2), (3, 1, 2)]:
        ras = np.array(image.TransformIndexToPhysicalPoint(index)) * [-1, -1, 1]
        voxel = np.linalg.solve(loaded[:3, :3], ras - loaded[:3, 3])
        np.testing.assert_allclose(voxel, np.rint(voxel), atol=1e-4)
        assert data[tuple(np.rint(voxel).astype(int))] == image[index] == array[index]


def _as_mha(nifti_root: Path, mha_root: Path) -> None:
    """A copy of a BONBID-HIE NIfTI folder in the release's format: the same folder and file names ending in .mha."""
    for path in nifti_root.rglob("*.nii.gz"):
        image = nib.load(str(path))
        target = mha_root / path.relative_to(nifti_root).with_name(path.name.replace(".nii.gz", ".mha"))
        write_mha(np.asarray(image.dataobj), image.affine, target)


@pytest.fixture(scope="module")
def hie_folders(tmp_path_factory):
    """The synthetic BONBID-HIE folder (written as NIfTI by the task) and the same folder as released (.mha)."""
    tmp = tmp_path_factory.mktemp("hie")
    task = get_task("hie")
    task.write_synthetic(tmp / "nifti", n_cases=3, shape=(24, 20, 8), seed=0)
    _as_mha(tmp / "nifti", tmp / "release")
    return task, tmp


def test_hie_as_released_is_found_checked_and_loaded_like_its_nifti_copy(hie_folders):
    task, tmp = hie_folders
    release, nifti = task.find_cases(tmp / "release"), task.find_cases(tmp / "nifti")
    assert [c.case_id for c in release] == [c.case_id for c in nifti] and len(release) == 3
    assert all(p.name.endswith(".mha") and p.exists() for c in release for p in (*c.images, c.label))
    assert [p.parent.name for p in (*release[0].images, release[0].label)] == ["1ADC_ss", "2Z_ADC", "3LABEL"]
    task.check_cases(release, root=tmp / "release")  # the up-front shape / affine / label checks pass on .mha
    for a_case, b_case in zip(nifti, release):
        a, b = task.load(a_case), task.load(b_case)
        assert a.case_id == b.case_id
        assert b.image.dtype == a.image.dtype == np.float32 and b.label.dtype == a.label.dtype == np.int64
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_allclose(a.spacing, b.spacing, rtol=1e-6)
        for pa, pb in zip((*a_case.images, a_case.label), (*b_case.images, b_case.label)):
            np.testing.assert_allclose(load_nifti(pa)[1], load_nifti(pb)[1], atol=1e-5)
    assert release and any(task.load(c).label.any() for c in release)  # the lesions came through


def test_hie_as_released_passes_the_data_source_checks(hie_folders, tmp_path):
    task, tmp = hie_folders
    data = resolve_task_data(task, data_root=tmp / "release", cache_dir=tmp_path / "cache")
    assert not data.synthetic and len(data.cases) == 3


def test_mha_label_affine_mismatch_is_caught_up_front(hie_folders, tmp_path):
    task, tmp = hie_folders
    root = tmp_path / "release"
    shutil.copytree(tmp / "release", root)
    label = sorted((root / "3LABEL").iterdir())[0]
    image = sitk.ReadImage(str(label))
    image.SetOrigin(tuple(v + 5.0 for v in image.GetOrigin()))
    sitk.WriteImage(image, str(label))
    with pytest.raises(BenchmarkInputError, match="affine") as info:
        task.check_cases(task.find_cases(root), root=root)
    assert str(label) in str(info.value)


def test_a_truncated_mha_is_one_error_naming_it(hie_folders, tmp_path):
    task, tmp = hie_folders
    root = tmp_path / "release"
    shutil.copytree(tmp / "release", root)
    bad = sorted((root / "2Z_ADC").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    cases = task.find_cases(root)
    with pytest.raises(BenchmarkInputError, match="MetaImage") as info:
        task.check_cases(cases, root=root)
    assert str(bad) in str(info.value)
    with pytest.raises(BenchmarkInputError) as info:
        task.load(next(c for c in cases if bad in c.images))
    assert str(bad) in str(info.value)


def test_an_mha_that_is_not_an_image_is_one_error_naming_it(tmp_path):
    bad = tmp_path / "x.mha"
    bad.write_bytes(b"ObjectType = Image\nNDims = 3\n")
    for read in (load_nifti, nifti_shape):
        with pytest.raises(BenchmarkInputError, match="MetaImage") as info:
            read(bad)
        assert str(bad) in str(info.value)
    with pytest.raises(BenchmarkInputError, match="not found"):
        load_nifti(tmp_path / "missing.mha")


def test_a_2d_mha_is_refused_naming_it(tmp_path):
    path = tmp_path / "slice.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.float32)), str(path))
    with pytest.raises(BenchmarkInputError, match="3D") as info:
        load_nifti(path)
    assert str(path) in str(info.value)
