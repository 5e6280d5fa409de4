"""NIfTI reading and writing shared by every task reader (nibabel, RAS orientation)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from benchmark.errors import BenchmarkInputError
from benchmark.records import atomic_path


def load_nifti(path: Path, *, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Load ``path`` reoriented to RAS; returns (array, affine). Corrupt files raise a clear error."""
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(img.dataobj, dtype=dtype)
    except FileNotFoundError:
        raise BenchmarkInputError(f"{path}: file not found") from None
    except Exception as exc:  # nibabel raises many types for truncated/corrupt files
        raise BenchmarkInputError(f"{path}: could not be read as NIfTI ({type(exc).__name__}: {exc})") from None
    return data, img.affine


def nifti_shape(path: Path) -> tuple[int, ...]:
    """Shape from the header only (cheap); used by up-front layout checks."""
    try:
        return tuple(int(s) for s in nib.as_closest_canonical(nib.load(str(path))).shape)
    except FileNotFoundError:
        raise BenchmarkInputError(f"{path}: file not found") from None
    except Exception as exc:
        raise BenchmarkInputError(f"{path}: could not be read as NIfTI ({type(exc).__name__}: {exc})") from None


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the column norms of the affine's 3x3 part."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def save_nifti(array: np.ndarray, path: Path, *, affine: np.ndarray | None = None) -> None:
    """Write atomically (``benchmark.records.atomic_path``: temp file + rename, parent folders created) so an
    interrupted write never leaves a truncated file."""
    affine = np.eye(4) if affine is None else affine
    with atomic_path(path) as tmp:
        nib.save(nib.Nifti1Image(array, affine), str(tmp))
