"""MSD Task01_BrainTumour ("BT-MSD" of the CSM paper, section IV.A; Antonelli et al. 2022).

Layout (as distributed): ``ROOT/dataset.json`` with ``ROOT/imagesTr/BRATS_XXX.nii.gz``, one 4D
NIfTI [X, Y, Z, 4] per case (channels FLAIR, T1w, T1gd, T2w), and ``ROOT/labelsTr/BRATS_XXX.nii.gz``.
The nnU-Net v1 (``Task001_BrainTumour``, split ``_0000`` .. ``_0003`` files) and v2
(``Dataset001_BrainTumour``) conversions of the same data are read too (tasks/dataset_json.py).

Labels are the dataset's own (its dataset.json): 1 edema, 2 non-enhancing tumour, 3 enhancing
tumour; NOT BraTS's 1/2/4. Evaluated regions, as in the CSM paper and the BraTS challenge:
WT = {1, 2, 3}, TC = {2, 3}, ET = {3}. (The CSM paper writes "tumor core = NCR"; we use the
challenge definition, which includes the enhancing part, as every BraTS evaluation does.)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, SegmentationTask, register_task
from tasks.brats import BraTS
from tasks.dataset_json import find_dataset_cases, parse_spec, read_dataset_json
from tasks.nifti import save_nifti
from tasks.synthetic import brats_subject

CHANNELS = ("FLAIR", "T1w", "T1gd", "T2w")  # dataset.json "modality" order ("t1gd" is lower-case there)
LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
BRATS_ORDER = (3, 0, 1, 2)  # brats_subject gives t1, t1ce, t2, flair -> FLAIR, T1w, T1gd, T2w
BRATS_TO_MSD = np.array([0, 2, 1, 0, 3], dtype=np.uint8)  # BraTS 1 necrotic/non-enh -> 2, 2 edema -> 1, 4 enhancing -> 3


@register_task("msd_brain")
class MSDBrainTumour(SegmentationTask):
    validation = 1 / 9  # CSM paper IV.A: train:validation:test 8:1:1 (a ninth of the non-test cases)
    spatial_aug = "csm"  # CSM paper IV.A: random flips (and crops)
    description = (
        "MSD Task01_BrainTumour: ROOT/dataset.json, ROOT/imagesTr/BRATS_XXX.nii.gz (4D: FLAIR, T1w, T1gd, T2w), "
        "ROOT/labelsTr/BRATS_XXX.nii.gz (1 edema, 2 non-enhancing, 3 enhancing)"
    )
    channels = CHANNELS
    label_values = (0, 1, 2, 3)
    region_names = ("WT", "TC", "ET")
    multilabel = True  # WT ⊃ TC ⊃ ET overlap: one sigmoid output per region, as for BraTS
    synthetic_cases = 16
    synthetic_shape = (64, 64, 32)

    def find_cases(self, root: Path) -> list[Case]:
        meta = read_dataset_json(root, expected=self.description)
        path = Path(root) / "dataset.json"
        spec = parse_spec(meta, path=path)
        # Pointed at another MSD task (e.g. Task02_Heart)? Say so instead of failing on shapes later.
        if tuple(c.lower() for c in spec.channels) != tuple(c.lower() for c in CHANNELS):
            raise BenchmarkInputError(f"{path}: channels {list(spec.channels)}; expected {list(CHANNELS)} (MSD Task01_BrainTumour)")
        if sorted(spec.label_values) != list(self.label_values) or spec.has_regions:
            raise BenchmarkInputError(f"{path}: labels {meta.get('labels')}; expected {LABELS} (MSD Task01_BrainTumour)")
        return find_dataset_cases(root, meta, spec, path=path)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Per-channel z-score over the brain (any channel non-zero), background 0: as BraTS (nnU-Net)."""
        return BraTS().normalize(image)  # same brains, same recipe

    def label_to_regions(self, label: torch.Tensor) -> torch.Tensor:
        label = label[:, 0]
        whole = label > 0
        core = (label == 2) | (label == 3)
        enhancing = label == 3
        return torch.stack([whole, core, enhancing], dim=1)

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        """brats_subject anatomy, relabelled and reordered to MSD conventions, one 4D file per case."""
        rng = np.random.default_rng(seed)
        affine = np.diag([240.0 / shape[0], 240.0 / shape[1], 155.0 / shape[2], 1.0])  # BraTS 1 mm grid 240x240x155
        training = []
        for i in range(1, n_cases + 1):
            case = f"BRATS_{i:03d}"
            image, label = brats_subject(shape, rng)
            save_nifti(np.stack([image[c] for c in BRATS_ORDER], axis=-1), root / "imagesTr" / f"{case}.nii.gz", affine=affine)
            save_nifti(BRATS_TO_MSD[label], root / "labelsTr" / f"{case}.nii.gz", affine=affine)
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        meta = {
            "name": "BRATS", "description": "Synthetic stand-in for MSD Task01_BrainTumour (medssl-bench)",
            "tensorImageSize": "4D", "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}, "labels": LABELS,
            "numTraining": n_cases, "numTest": 0, "training": training, "test": [],
        }
        root.mkdir(parents=True, exist_ok=True)
        (root / "dataset.json").write_text(json.dumps(meta, indent=4))
