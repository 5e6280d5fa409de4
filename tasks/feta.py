"""FeTA 2021: fetal brain tissue segmentation on super-resolved T2w MRI (Payette et al. 2021), DAE paper 3.1.

Layout (BIDS-like, as released in ``feta_2.1``): ``ROOT/sub-XXX/anat/sub-XXX_rec-<method>_T2w.nii.gz``
with ``sub-XXX_rec-<method>_dseg.nii.gz`` beside it (``rec-mial`` or ``rec-irtk``: the super-resolution
method of the site). Volumes are 256³ at 0.5 mm, histogram-matched and zero-padded.

Labels: 1 external CSF, 2 grey matter, 3 white matter, 4 ventricles, 5 cerebellum, 6 deep grey
matter, 7 brainstem; one Dice each and their mean (DAE paper, Table 3). Intensities "normalized to
a scale of 0 to 1" (DAE paper 3.2): min-max per volume.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, SegmentationTask, register_task
from tasks.nifti import save_nifti
from tasks.synthetic import FETA_TISSUES, feta_subject


@register_task("feta")
class FeTA(SegmentationTask):
    validation = 0.2  # DAE paper 3.2: 20 % of the training volumes validate
    spatial_aug = "dae"  # DAE paper 3.2: flips on all 3 axes, Gaussian noise, ...
    description = "FeTA 2021: ROOT/sub-XXX/anat/sub-XXX_rec-<mial|irtk>_T2w.nii.gz with sub-XXX_rec-<...>_dseg.nii.gz"
    channels = ("T2w",)
    label_values = tuple(range(8))
    region_names = tuple(FETA_TISSUES[v] for v in range(1, 8))
    multilabel = False  # tissues are disjoint: softmax over background + 7 tissues
    synthetic_cases = 12
    synthetic_shape = (64, 64, 32)

    def find_cases(self, root: Path) -> list[Case]:
        subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
        if not subjects:
            raise BenchmarkInputError(f"{root}: no sub-XXX folders found; expected {self.description}")
        cases = []
        for subject in subjects:
            images = sorted((subject / "anat").glob(f"{subject.name}_*T2w.nii*"))
            if not images:  # a subject folder without its image is an error, not a skipped case
                raise BenchmarkInputError(f"{subject}: no T2w image; expected {subject / 'anat' / f'{subject.name}_rec-mial_T2w.nii.gz'}")
            for image in images:
                label = image.with_name(image.name.replace("_T2w.nii", "_dseg.nii"))
                if not label.exists():
                    raise BenchmarkInputError(f"{image}: no matching segmentation; expected {label}")
                cases.append(Case(case_id=image.name.split("_T2w")[0], images=(image,), label=label))
        return cases

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Min-max to [0, 1] per channel (DAE paper: "normalized to a scale of 0 to 1")."""
        low = image.min(axis=tuple(range(1, image.ndim)), keepdims=True)
        high = image.max(axis=tuple(range(1, image.ndim)), keepdims=True)
        return (image - low) / np.maximum(high - low, 1e-8)

    def label_to_regions(self, label: torch.Tensor) -> torch.Tensor:
        tissues = torch.arange(1, 8, device=label.device).view(1, 7, *([1] * (label.dim() - 2)))
        return label == tissues  # [B, 1, ...] == [1, 7, ...] -> [B, 7, ...]

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        rng = np.random.default_rng(seed)
        affine = np.diag([128.0 / n for n in shape] + [1.0])  # FeTA's field of view: 256 voxels of 0.5 mm
        for i in range(1, n_cases + 1):
            subject = f"sub-{i:03d}"
            rec = "mial" if i % 2 else "irtk"  # the two sites' super-resolution methods
            image, label = feta_subject(shape, rng)
            save_nifti(image, root / subject / "anat" / f"{subject}_rec-{rec}_T2w.nii.gz", affine=affine)
            save_nifti(label, root / subject / "anat" / f"{subject}_rec-{rec}_dseg.nii.gz", affine=affine)
