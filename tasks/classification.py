"""Case-level classification tasks: one class per patient from its MRI series (CSM paper, section IV).

A ``ClassificationTask`` is a ``Task`` (same registry, ``get_task`` / ``list_tasks``, data sources,
planner and up-front checks) whose cases carry a class index ``Case.target`` instead of a label map;
its kind (``benchmark/kinds/classification.py``) brings the classifier network, loss, evaluation and
metric rows.

Loading (``load``), every case:

1. every series is read with ``tasks.nifti.load_nifti``: RAS orientation, geometry from the header;
2. every series is resampled onto the FIRST series' voxel grid in world (scanner) coordinates,
   from the NIfTI affines (trilinear, ``resample_to_grid``). Prostate158's DWI and ADC have a
   coarser in-plane resolution than its T2. Resampling by world coordinates rather than by array
   shape (MONAI ``Resize``) keeps the series aligned when their fields of view or origins differ,
   and is the same thing as a resize when they coincide; voxels outside a series' field of view are 0;
3. ``Case.label``, when given, is a region-of-interest mask on the first series' grid (Prostate158:
   the radiologist's prostate gland); the series are cropped to its bounding box plus
   ``roi_margin_mm``, as the CSM paper feeds "the prostate regions delineated by radiologists" and
   "slightly expanded" lesion regions (section IV);
4. per-series z-score over that series' non-zero voxels (zeros stay 0: background, or outside
   the series' field of view).

``Volume.label`` is None (no label map) and ``Volume.target`` the class. Metrics: per test case the
positive-class probability (``prob_positive``; ``prob_<k>`` per class when there are more than two),
``correct`` (argmax == class) and ``target``; per test set (set-level rows) ``auc`` (MONAI ``compute_roc_auc``: the positive class's probability for
two classes, one-vs-rest macro average for more) and ``accuracy``. The AUC of a test set holding
one class only is undefined and written as NaN.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError
from tasks.base import AFFINE_ATOL_MM, AFFINE_RTOL, Case, Task, Volume
from tasks.nifti import load_nifti, voxel_spacing


class ClassificationTask(Task):
    """Shared reader, checks and metrics of the case-level classification tasks."""

    validation = 1 / 9  # CSM paper IV.A: train:validation:test 8:1:1
    spatial_aug = "csm"  # CSM paper IV.A: random flips
    kind = "classification"
    class_names: ClassVar[tuple[str, ...]]  # index = class; set per instance by readers whose classes come from the data
    positive_class: ClassVar[int] = 1  # the class whose probability the (binary) AUC ranks
    roi_margin_mm: ClassVar[float] = 10.0  # margin around a region-of-interest mask's bounding box
    # Modules whose source the synthetic data depend on (benchmark.datasources hashes them into the cache name).
    synthetic_modules: ClassVar[tuple[str, ...]] = ("tasks.synthetic_classification",)

    @property
    def label_values(self) -> tuple[int, ...]:
        return tuple(range(len(self.class_names)))

    @property
    def num_outputs(self) -> int:
        return len(self.class_names)

    # ---- checks (before any training) -----------------------------------------------------------
    def check_cases(self, cases: list[Case], *, root: Path) -> None:
        """Every series reads as a 3D NIfTI (a truncated .nii.gz fails here), holds finite values and
        overlaps the first series in world coordinates; a region mask is on the first series' grid and
        not empty; every class index is one the task defines."""
        if not cases:
            raise BenchmarkInputError(f"{root}: no {self.name} cases found; expected {self.layout_help()}")
        for case in cases:
            if case.target not in self.label_values:
                raise BenchmarkInputError(f"{case.images[0]}: case {case.case_id!r} has class index {case.target}; "
                                          f"expected one of {list(self.label_values)} ({', '.join(self.class_names)})")
            grids = []
            for path in case.images:
                data, affine = read_series(path)
                self._check_finite(path, data)
                grids.append((path, data.shape, affine))
            first, shape, affine = grids[0]
            for path, other_shape, other_affine in grids[1:]:
                if not _fields_of_view_overlap(shape, affine, other_shape, other_affine):
                    raise BenchmarkInputError(
                        f"{path}: its field of view (from the NIfTI header) does not overlap that of {first}; "
                        "expected series of one scan, with their scanner coordinates in the headers")
            if case.label is not None:
                self._check_region_mask(case.label, shape=shape, affine=affine, first=first)

    @staticmethod
    def _check_region_mask(path: Path, *, shape, affine, first: Path) -> None:
        mask, mask_affine = read_series(path)
        if mask.shape != shape or not np.allclose(mask_affine, affine, rtol=AFFINE_RTOL, atol=AFFINE_ATOL_MM):
            raise BenchmarkInputError(f"{path}: region mask shape {mask.shape} / affine differ from {first} {shape}; "
                                      "expected the mask on the first series' voxel grid")
        if not (mask > 0).any():
            raise BenchmarkInputError(f"{path}: region mask is empty; expected the region the inputs are cropped to")

    # ---- loading ------------------------------------------------------------------------------
    def load(self, case: Case) -> Volume:
        reference, affine = read_series(case.images[0])
        series = [reference]
        for path in case.images[1:]:
            data, other_affine = read_series(path)
            self._check_finite(path, data)
            same_grid = data.shape == reference.shape and np.allclose(other_affine, affine, rtol=AFFINE_RTOL, atol=AFFINE_ATOL_MM)
            series.append(data if same_grid else resample_to_grid(data, other_affine, shape=reference.shape, ref_affine=affine))
        self._check_finite(case.images[0], reference)
        image = np.stack(series).astype(np.float32)  # [C, X, Y, Z] on the first series' grid
        spacing = voxel_spacing(affine)
        if case.label is not None:
            mask, _ = read_series(case.label)
            image = crop_to_mask(image, mask > 0, margin=[int(np.ceil(self.roi_margin_mm / s)) for s in spacing])
        image = self.normalize(image)
        return Volume(case_id=case.case_id, image=image, label=None, spacing=spacing, target=case.target)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Per-series z-score over the series' non-zero voxels (zeros: background or outside its field of view)."""
        out = np.zeros_like(image)
        for c, x in enumerate(image):
            inside = x != 0
            values = x[inside]
            if values.size:
                out[c][inside] = (values - values.mean()) / max(float(values.std()), 1e-8)
        return out

    # ---- metrics ----------------------------------------------------------------------------------
    def case_metrics(self, probs: np.ndarray, target: int) -> dict[str, float]:
        """One test case: class probabilities [K] -> prob_positive (prob_<k> for K > 2), correct, target."""
        out = {"correct": float(int(np.argmax(probs)) == int(target)), "target": float(target)}
        if len(probs) == 2:
            out["prob_positive"] = float(probs[self.positive_class])
        else:
            out.update({f"prob_{k}": float(p) for k, p in enumerate(probs)})
        return out

    def set_metrics(self, probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """A test set: probabilities [N, K] and classes [N] -> auc (MONAI compute_roc_auc), accuracy.

        auc is NaN when the set holds a single class (undefined), or, for K > 2, when a class is absent.
        """
        from monai.metrics import compute_roc_auc

        probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=np.int64)
        y_pred, y = torch.from_numpy(probs), torch.from_numpy(targets)
        with warnings.catch_warnings():  # MONAI warns and returns NaN for a single class; the caller logs it
            warnings.simplefilter("ignore", UserWarning)
            if probs.shape[1] == 2:
                auc = compute_roc_auc(y_pred[:, self.positive_class], (y == self.positive_class).long())
            else:  # one-vs-rest, macro average
                auc = compute_roc_auc(y_pred, torch.nn.functional.one_hot(y, probs.shape[1]), average="macro")
        accuracy = float((probs.argmax(axis=1) == targets).mean())
        return {"auc": float(auc), "accuracy": accuracy}


# ---- helpers shared by the readers -------------------------------------------------------------------
def read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One series as a 3D array (RAS) and its affine; a trailing singleton 4th axis is dropped."""
    data, affine = load_nifti(path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BenchmarkInputError(f"{path}: image shape {data.shape}; expected a 3D volume [X, Y, Z] (one series per file)")
    return data, affine


def resample_to_grid(data: np.ndarray, affine: np.ndarray, *, shape: tuple[int, ...], ref_affine: np.ndarray) -> np.ndarray:
    """``data`` (voxel-to-world ``affine``) resampled trilinearly onto the grid (``shape``, ``ref_affine``).

    Positions are matched in world coordinates. Outside the source's field of view the result is 0;
    the source is padded by one voxel with its edge values so that its outermost voxels reach their
    own border instead of stopping at their centres.
    """
    from scipy import ndimage

    ref_to_source = np.linalg.inv(affine) @ ref_affine  # reference voxel index -> source voxel index
    padded = np.pad(data, 1, mode="edge")
    return ndimage.affine_transform(padded, ref_to_source[:3, :3], offset=ref_to_source[:3, 3] + 1.0, output_shape=tuple(shape),
                                    order=1, mode="constant", cval=0.0)


def crop_to_mask(image: np.ndarray, mask: np.ndarray, *, margin: list[int]) -> np.ndarray:
    """image [C, X, Y, Z] cropped to the bounding box of ``mask`` [X, Y, Z] plus ``margin`` voxels per axis."""
    points = np.argwhere(mask)
    lo = np.maximum(points.min(axis=0) - margin, 0)
    hi = np.minimum(points.max(axis=0) + 1 + np.asarray(margin), mask.shape)
    return image[(slice(None), *(slice(a, b) for a, b in zip(lo, hi)))]


def _world_box(shape, affine) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper world corners of the volume covered by a voxel grid (voxel borders, not centres)."""
    corners = np.array([[i, j, k] for i in (-0.5, shape[0] - 0.5) for j in (-0.5, shape[1] - 0.5) for k in (-0.5, shape[2] - 0.5)])
    world = corners @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    return world.min(axis=0), world.max(axis=0)


def _fields_of_view_overlap(shape_a, affine_a, shape_b, affine_b) -> bool:
    lo_a, hi_a = _world_box(shape_a, affine_a)
    lo_b, hi_b = _world_box(shape_b, affine_b)
    return bool((np.minimum(hi_a, hi_b) > np.maximum(lo_a, lo_b)).all())


def read_csv_table(path: Path, *, required: tuple[str, ...], expected: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """A CSV file's header and its non-blank rows as (line number, {column: stripped value}).

    A missing required column, a row with more or fewer values than the header, or an empty value
    in a required column is an error naming the file, the line and the column.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheet exports start with a BOM
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BenchmarkInputError(f"{path}: could not be read as CSV ({type(exc).__name__}: {exc}); expected {expected}") from None
    if not lines:
        raise BenchmarkInputError(f"{path}: file is empty; expected {expected}")
    header = [name.strip() for name in lines[0]]
    for column in required:
        if column not in header:
            raise BenchmarkInputError(f"{path}: no column {column!r} in the header {header}; expected {expected}")
    rows = []
    for number, values in enumerate(lines[1:], start=2):
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise BenchmarkInputError(f"{path} line {number}: {len(values)} values for the {len(header)} columns {header}; "
                                      "expected one value per column")
        row = {name: value.strip() for name, value in zip(header, values)}
        for column in required:
            if not row[column]:
                raise BenchmarkInputError(f"{path} line {number}: column {column!r} is empty; expected a value")
        rows.append((number, row))
    return header, rows


def csv_file_path(root: Path, value: str, *, table: Path, line: int, column: str) -> Path:
    """A file named in a CSV cell (relative to ``root``, or absolute) that must exist."""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else Path(root) / path
    if not path.is_file():
        raise BenchmarkInputError(f"{path}: file not found (named by {table} line {line}, column {column!r}); expected a NIfTI file")
    return path
