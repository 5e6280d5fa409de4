"""Prostate158: case-level prostate cancer diagnosis from biparametric MRI (T2w, DWI, ADC), AUC.

Dataset: Adams et al., "Prostate158 - An expert-annotated 3T MRI dataset and algorithm for prostate
cancer detection", Comput. Biol. Med. 2022 (zenodo 6481141: 139 training MRIs; test set 19 MRIs).
Task: the CSM paper's "prostate cancer diagnosis" (section IV, Table IV, AUC), one ViT over the
three series plus a classification head.

Layout (as distributed, and as the authors' loader reads it): ``ROOT/train.csv`` (+ ``valid.csv``,
``test.csv`` when present), one row per case, columns ``ID,t2,adc,dwi`` and the annotations
``t2_anatomy_reader1, t2_tumor_reader1, adc_tumor_reader1, ...``; every path is relative to ROOT,
typically ``train/<ID>/{t2,adc,dwi}.nii.gz``. Cases without a tumour have an empty tumour cell.
Case ids are the case folder relative to ROOT (``train-020``), since the training and the test
release may number their folders alike.

Class (``target``): 1 if the case's tumour mask (``adc_tumor_reader1``, else ``t2_tumor_reader1``:
the first of these whose cell is filled) has any voxel > 0, else 0. What a tumour mask means:
the dataset paper's readers segmented "areas of suspected prostate cancer (PI-RADS score >= 4)"
(Data in Brief 2022 description of the same dataset) and the dataset page states that every
cancerous lesion is histopathologically confirmed. So class 1 is "a PI-RADS >= 4 lesion, confirmed
cancer"; the release does not give ISUP grade groups, so the class is NOT "ISUP >= 2"
(clinically significant) by construction. Tumour masks may hold only 0 and 1 (the authors'
tumour model has "one [output] for each label + background", 2 outputs).

Inputs: series in the order T2w, DWI, ADC (the CSM paper's order), DWI and ADC resampled onto the
T2 grid by world coordinates (tasks/classification.py), then cropped to the prostate gland
(``t2_anatomy_reader1`` > 0, plus a 10 mm margin): the CSM paper "extract[s] the prostate regions
delineated by radiologists to serve as the final input images" (section IV). If a CSV has no
``t2_anatomy_reader1`` column, no case is cropped; if it has one, every row must fill it.

Splits: the suite's seeded patient-wise split over all listed cases (as for every task), not the
release's train / valid / test files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, register_task
from tasks.classification import ClassificationTask, csv_file_path, read_csv_table
from tasks.nifti import load_nifti, save_nifti
from tasks.synthetic_classification import downsample_inplane, prostate_subject

SERIES = ("t2", "dwi", "adc")  # channel order; the CSV column names
CSV_FILES = ("train.csv", "valid.csv", "test.csv")
REQUIRED = ("ID", "t2", "adc", "dwi")
TUMOUR_COLUMNS = ("adc_tumor_reader1", "t2_tumor_reader1")  # preference order
GLAND_COLUMN = "t2_anatomy_reader1"
TUMOUR_VALUES = (0, 1)
HEADER = ("ID", "t2", "adc", "dwi", "t2_anatomy_reader1", "t2_tumor_reader1", "adc_tumor_reader1", "t2_anatomy_reader2", "adc_tumor_reader2")
LAYOUT = ("Prostate158: ROOT/train.csv (+ valid.csv, test.csv) with columns ID,t2,adc,dwi,t2_anatomy_reader1,adc_tumor_reader1"
          "[,t2_tumor_reader1,...], paths relative to ROOT (e.g. train/<ID>/{t2,adc,dwi}.nii.gz); empty tumour cell = no tumour")


@register_task("prostate158")
class Prostate158(ClassificationTask):
    description = LAYOUT
    channels = SERIES
    class_names = ("no_lesion", "lesion")  # lesion: an annotated PI-RADS >= 4, histologically confirmed cancer
    synthetic_cases = 16
    synthetic_shape = (64, 64, 32)  # the T2 grid; DWI and ADC are written at half the in-plane resolution
    synthetic_modules = ("tasks.synthetic_classification", "tasks.prostate158")

    def find_cases(self, root: Path) -> list[Case]:
        root = Path(root)
        tables = [root / name for name in CSV_FILES if (root / name).is_file()]
        if not tables:
            raise BenchmarkInputError(f"{root}: no train.csv; expected {LAYOUT}")
        cases, source = [], {}
        for table in tables:
            header, rows = read_csv_table(table, required=REQUIRED, expected=LAYOUT)
            tumour_columns = [c for c in TUMOUR_COLUMNS if c in header]
            if not tumour_columns:
                raise BenchmarkInputError(f"{table}: none of the tumour label columns {list(TUMOUR_COLUMNS)} in the header {header}; "
                                          "expected them, since the class of a case is whether its tumour mask is non-empty")
            for line, row in rows:
                where = dict(table=table, line=line)
                images = tuple(csv_file_path(root, row[column], column=column, **where) for column in SERIES)
                gland = None
                if GLAND_COLUMN in header:
                    if not row[GLAND_COLUMN]:
                        raise BenchmarkInputError(f"{table} line {line}: column {GLAND_COLUMN!r} is empty; expected the gland mask "
                                                  "of every case (inputs are cropped to the gland)")
                    gland = csv_file_path(root, row[GLAND_COLUMN], column=GLAND_COLUMN, **where)
                case_id = _case_id(root, images[0], row["ID"])
                if case_id in source:
                    raise BenchmarkInputError(f"{table} line {line}: case {case_id!r} is listed again (first in {source[case_id]}); "
                                              "expected each case folder once")
                source[case_id] = f"{table} line {line}"
                target = self._target(root, row, tumour_columns, **where)
                cases.append(Case(case_id=case_id, images=images, label=gland, target=target))
        return cases

    @staticmethod
    def _target(root: Path, row: dict[str, str], columns: list[str], *, table: Path, line: int) -> int:
        """1 if the first filled tumour cell names a mask with any voxel > 0; 0 if none is filled or the mask is empty."""
        for column in columns:
            if row[column]:
                path = csv_file_path(root, row[column], table=table, line=line, column=column)
                mask, _ = load_nifti(path)
                unknown = sorted(set(np.unique(mask).tolist()) - set(TUMOUR_VALUES))
                unknown = [int(v) if float(v).is_integer() else v for v in unknown]
                if unknown:
                    raise BenchmarkInputError(f"{path}: tumour mask values {unknown}; expected only {list(TUMOUR_VALUES)}")
                return int((mask > 0).any())
        return 0

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        """``n_cases`` pelvises, half with a lesion, as the release: case folders ``train/<ID>/`` and train.csv /
        valid.csv. T2 on ``shape`` (128 x 128 x 96 mm field of view), DWI and ADC at half the in-plane
        resolution over the same field of view and stored with flipped x / y axes (as DICOM-converted LPS
        series often are), so the reader must use the headers to align them."""
        if shape[0] % 2 or shape[1] % 2:
            raise ValueError(f"synthetic Prostate158 needs an even T2 in-plane size (DWI/ADC at half resolution), got {shape}")
        rng = np.random.default_rng(seed)
        t2_affine = _centred_affine(shape, fov=(128.0, 128.0, 96.0))
        low = (shape[0] // 2, shape[1] // 2, shape[2])
        dwi_affine = _flip_xy(_centred_affine(low, fov=(128.0, 128.0, 96.0)), low)
        rows = {"train.csv": [], "valid.csv": []}
        for i in range(n_cases):
            case_id = 20 + i  # numbered like the release: the ID column holds the number, the folder its 3-digit form
            folder = Path("train") / f"{case_id:03d}"
            image, anatomy, lesion = prostate_subject(shape, rng, lesion=i % 2 == 0)
            t2, dwi, adc = image
            save_nifti(t2, root / folder / "t2.nii.gz", affine=t2_affine)
            save_nifti(_flip_data(downsample_inplane(dwi, 2)), root / folder / "dwi.nii.gz", affine=dwi_affine)
            save_nifti(_flip_data(downsample_inplane(adc, 2)), root / folder / "adc.nii.gz", affine=dwi_affine)
            save_nifti(anatomy, root / folder / "t2_anatomy_reader1.nii.gz", affine=t2_affine)
            row = {"ID": str(case_id), **{s: f"{folder}/{s}.nii.gz" for s in ("t2", "adc", "dwi")},
                   "t2_anatomy_reader1": f"{folder}/t2_anatomy_reader1.nii.gz"}
            if lesion.any():
                save_nifti(lesion.astype(np.uint8), root / folder / "t2_tumor_reader1.nii.gz", affine=t2_affine)
                adc_mask = _flip_data(downsample_inplane(lesion, 2, reduce=np.max)).astype(np.uint8)  # annotated on the ADC map
                save_nifti(adc_mask, root / folder / "adc_tumor_reader1.nii.gz", affine=dwi_affine)
                row.update(t2_tumor_reader1=f"{folder}/t2_tumor_reader1.nii.gz", adc_tumor_reader1=f"{folder}/adc_tumor_reader1.nii.gz")
            rows["train.csv" if i < n_cases - max(1, n_cases // 8) else "valid.csv"].append(row)
        for name, table in rows.items():
            lines = [",".join(HEADER)] + [",".join(row.get(column, "") for column in HEADER) for row in table]
            (root / name).write_text("\n".join(lines) + "\n")


def _case_id(root: Path, t2: Path, number: str) -> str:
    """The case folder relative to ROOT, parts joined by '-' ("train-020"); the ID column if the file lies elsewhere."""
    try:
        return "-".join(t2.parent.relative_to(root).parts) or number
    except ValueError:
        return number


def _centred_affine(shape, *, fov) -> np.ndarray:
    """RAS affine of a grid of ``shape`` voxels spanning ``fov`` mm, centred on the scanner origin."""
    spacing = np.asarray(fov) / np.asarray(shape)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * spacing
    return affine


def _flip_xy(affine: np.ndarray, shape) -> np.ndarray:
    """The affine of the same grid stored with reversed x and y axes (index i -> n - 1 - i)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = shape[0] - 1, shape[1] - 1
    return affine @ flip


def _flip_data(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[::-1, ::-1])
