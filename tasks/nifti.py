"""Image reading and writing shared by every task reader: NIfTI (nibabel) and MetaImage (``.mha`` / ``.mhd``, SimpleITK, as
BONBID-HIE is released), both returned in RAS orientation with a RAS affine, so a task reads either the same way."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from benchmark.errors import BenchmarkInputError
from benchmark.records import atomic_path


METAIMAGE_SUFFIXES = (".mha", ".mhd")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # ITK's physical space is LPS, NIfTI's RAS


def is_metaimage(path: Path) -> bool:
    return Path(path).suffix.lower() in METAIMAGE_SUFFIXES


def _format(path: Path) -> str:
    return "MetaImage" if is_metaimage(path) else "NIfTI"


def _metaimage_affine(spacing, direction, origin) -> np.ndarray:
    """The RAS affine of an ITK image: voxel index (x, y, z) -> origin + direction @ (spacing * index), LPS -> RAS."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)[None, :]
    lps[:3, 3] = origin
    return _LPS_TO_RAS @ lps


def _open(path: Path, *, header_only: bool = False) -> nib.Nifti1Image:
    """``path`` as a nibabel image (a MetaImage's voxels [x, y, z] and RAS affine; header only: an empty stand-in)."""
    if not is_metaimage(path):
        return nib.load(str(path))
    if header_only:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        affine = _metaimage_affine(reader.GetSpacing(), reader.GetDirection(), reader.GetOrigin())
        return nib.Nifti1Image(np.empty(reader.GetSize(), dtype=np.uint8), affine)  # np.empty: no voxel is touched
    image = sitk.ReadImage(str(path))
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"expected a 3D single-component image, got {image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} component(s)")
    voxels = sitk.GetArrayViewFromImage(image).transpose(2, 1, 0)  # ITK arrays are [z, y, x]
    return nib.Nifti1Image(np.array(voxels), _metaimage_affine(image.GetSpacing(), image.GetDirection(), image.GetOrigin()))


def load_nifti(path: Path, *, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Load ``path`` (NIfTI, or MetaImage ``.mha`` / ``.mhd``) reoriented to RAS; returns (array, affine). Corrupt files
    raise a clear error naming the file."""
    if not Path(path).exists():
        raise BenchmarkInputError(f"{path}: file not found")
    try:
        img = nib.as_closest_canonical(_open(path))
        data = np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:  # nibabel and ITK raise many types for truncated/corrupt files
        raise BenchmarkInputError(f"{path}: could not be read as {_format(path)} ({type(exc).__name__}: {exc})") from None
    return data, img.affine


def nifti_shape(path: Path) -> tuple[int, ...]:
    """Shape (RAS orientation) from the header only (cheap); used by up-front layout checks."""
    if not Path(path).exists():
        raise BenchmarkInputError(f"{path}: file not found")
    try:
        return tuple(int(s) for s in nib.as_closest_canonical(_open(path, header_only=True)).shape)
    except Exception as exc:
        raise BenchmarkInputError(f"{path}: could not be read as {_format(path)} ({type(exc).__name__}: {exc})") from None


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the column norms of the affine's 3x3 part."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def save_nifti(array: np.ndarray, path: Path, *, affine: np.ndarray | None = None) -> None:
    """Write atomically (``benchmark.records.atomic_path``: temp file + rename, parent folders created) so an
    interrupted write never leaves a truncated file."""
    affine = np.eye(4) if affine is None else affine
    with atomic_path(path) as tmp:
        nib.save(nib.Nifti1Image(array, affine), str(tmp))
