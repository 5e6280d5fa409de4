"""Bring your own classification data: any CSV manifest of multi-series MRI cases (``--tasks mri_cls``).

For in-house sets such as the CSM paper's Breast2023 (515 lesions, T1ce / DWI / T2w series, benign
vs malignant confirmed by pathology, AUC; section IV).

Layout: ``ROOT/manifest.csv`` with the header ``case,<series 1>,...,<series S>,label`` (the
``case`` and ``label`` columns may stand anywhere; every other column is a series, in header
order), one row per case, each series a NIfTI path relative to ROOT (or absolute). Series may
differ in resolution and field of view: they are resampled onto the first series' grid by their
headers (tasks/classification.py).

Channels and classes come from the data, so a task instance takes them from the manifest in
``find_cases``; a Ray worker rebuilds the task by name and calls ``find_cases`` on the same
``data_root`` before anything reads them (benchmark.train.run_group), so both agree.

Classes: with ``ROOT/classes.txt`` (one class name per line, in index order), those classes, and
a manifest label outside them is an error. Without it, the sorted distinct labels: numerically
when every label is an integer (0/1 -> 0/1; 1/2 -> 0/1), else as text ("benign" < "malignant",
so malignant is index 1). With two classes the AUC ranks the probability of index 1; with more,
it is the one-vs-rest macro average.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, register_task
from tasks.classification import ClassificationTask, csv_file_path, read_csv_table
from tasks.nifti import save_nifti
from tasks.synthetic_classification import breast_lesion, downsample_inplane

MANIFEST = "manifest.csv"
CLASSES = "classes.txt"
LAYOUT = ("a CSV manifest: ROOT/manifest.csv with header case,<series 1>,...,<series S>,label, one row per case, series paths "
          "(NIfTI) relative to ROOT, labels integers or class names (optional ROOT/classes.txt: class names in index order)")
SYNTHETIC_SERIES = ("t1ce", "t2w")


@register_task("mri_cls")
class ManifestClassification(ClassificationTask):
    description = LAYOUT
    channels = ()  # from the manifest header (find_cases)
    class_names = ()  # from the manifest labels or classes.txt (find_cases)
    synthetic_cases = 16
    synthetic_shape = (48, 48, 24)
    synthetic_modules = ("tasks.synthetic_classification", "tasks.mri_cls")

    def find_cases(self, root: Path) -> list[Case]:
        root = Path(root)
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise BenchmarkInputError(f"{root}: no {MANIFEST}; expected {LAYOUT}")
        header, rows = read_csv_table(manifest, required=("case", "label"), expected=LAYOUT)
        series = tuple(column for column in header if column not in ("case", "label"))
        if not series or len(set(header)) != len(header):
            raise BenchmarkInputError(f"{manifest}: header {header}; expected case, one or more distinct series names, label")
        for line, row in rows:
            for column in series:
                if not row[column]:
                    raise BenchmarkInputError(f"{manifest} line {line}: column {column!r} is empty; expected the path of its "
                                              f"{column} series")
        classes = self._classes(root, manifest, rows)
        cases, seen = [], {}
        for line, row in rows:
            case_id = row["case"]
            if case_id in seen:
                raise BenchmarkInputError(f"{manifest} line {line}: case {case_id!r} already on line {seen[case_id]}; expected unique case ids")
            seen[case_id] = line
            images = tuple(csv_file_path(root, row[column], table=manifest, line=line, column=column) for column in series)
            cases.append(Case(case_id=case_id, images=images, label=None, target=classes.index(row["label"])))
        if not cases:
            raise BenchmarkInputError(f"{manifest}: no case rows; expected {LAYOUT}")
        self.channels, self.class_names = series, tuple(classes)
        return cases

    @staticmethod
    def _classes(root: Path, manifest: Path, rows) -> list[str]:
        """Class names in index order: classes.txt, or the sorted distinct labels (numerically if all integers)."""
        labels = [row["label"] for _, row in rows]
        listing = root / CLASSES
        if listing.is_file():
            classes = [name.strip() for name in listing.read_text(encoding="utf-8").splitlines() if name.strip()]
            if len(classes) < 2 or len(set(classes)) != len(classes):
                raise BenchmarkInputError(f"{listing}: classes {classes}; expected at least two distinct class names, one per line")
            for line, row in rows:
                if row["label"] not in classes:
                    raise BenchmarkInputError(f"{manifest} line {line}: label {row['label']!r} is not a class of {listing}; "
                                              f"expected one of {classes}")
            return classes
        distinct = set(labels)
        try:
            classes = [str(v) for v in sorted(distinct, key=int)]
        except ValueError:
            classes = sorted(distinct)
        if len(classes) < 2:
            raise BenchmarkInputError(f"{manifest}: every case has label {labels[0]!r} (if any); expected at least two classes")
        return classes

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        """A breast-like set: lesion-centred T1ce and T2w crops (1 mm T1ce, T2w at 2 mm in-plane over the same
        field of view), labels "benign" / "malignant" alternating, and the manifest."""
        rng = np.random.default_rng(seed)
        t1_affine = np.diag([1.0, 1.0, 2.0, 1.0])
        t2_affine = np.diag([2.0, 2.0, 2.0, 1.0])
        t2_affine[:2, 3] = 0.5  # voxel centres of the coarser grid sit mid-way between two fine ones
        lines = ["case," + ",".join(SYNTHETIC_SERIES) + ",label"]
        for i in range(n_cases):
            case = f"Breast_{i:03d}"
            malignant = i % 2 == 1
            t1ce, t2w = breast_lesion(shape, rng, malignant=malignant)
            save_nifti(t1ce, root / "images" / f"{case}_t1ce.nii.gz", affine=t1_affine)
            save_nifti(downsample_inplane(t2w, 2).astype(np.float32), root / "images" / f"{case}_t2w.nii.gz", affine=t2_affine)
            lines.append(f"{case},images/{case}_t1ce.nii.gz,images/{case}_t2w.nii.gz,{'malignant' if malignant else 'benign'}")
        root.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).write_text("\n".join(lines) + "\n")
