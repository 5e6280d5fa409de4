"""BraTS 2018-2021 brain-tumour segmentation (Menze et al. 2014; Bakas et al. 2018).

Layout (as distributed): ``ROOT/<subject>/<subject>_{t1,t1ce,t2,flair,seg}.nii.gz``, subject
folders possibly grouped one level deeper (``HGG/``, ``LGG/`` in BraTS 2018). Labels:
1 necrotic / non-enhancing core, 2 edema, 4 enhancing tumour. Evaluated regions, as in the
challenge and the SI paper section 5.1.1: WT = {1, 2, 4}, TC = {1, 4}, ET = {4}.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, SegmentationTask, register_task
from tasks.intensity import zscore
from tasks.metrics import pooled_dice
from tasks.nifti import save_nifti
from tasks.synthetic import brats_subject

MODALITIES = ("t1", "t1ce", "t2", "flair")


def _find(folder: Path, suffix: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        path = folder / f"{folder.name}_{suffix}{ext}"
        if path.exists():
            return path
    return None


@register_task("brats")
class BraTS(SegmentationTask):
    validation = 10  # SI paper 5.1: 10 BraTS subjects validate (capped at a third of the training cases)
    description = "BraTS subject folders: ROOT/<subject>/<subject>_{t1,t1ce,t2,flair,seg}.nii.gz"
    channels = MODALITIES
    label_values = (0, 1, 2, 4)
    region_names = ("WT", "TC", "ET")
    extra_metrics = ("dice_all",)  # pooled Dice of the three regions (SI paper 6.1)
    multilabel = True  # WT ⊃ TC ⊃ ET overlap, so one sigmoid output per region
    spatial_aug = "si"  # SI paper 5.5.3: rotation, scaling, flipping, elastic deformation
    inplane = ("crop_pad", (200, 200))  # SI paper 5.1.1: "cropped/padded ... 200 x 200 x Z where the main brain tissues are preserved"
    synthetic_cases = 16
    synthetic_shape = (64, 64, 32)

    def find_cases(self, root: Path) -> list[Case]:
        # A subject folder is any folder holding a <name>_seg file; HGG/LGG grouping is allowed.
        folders = sorted({p.parent for p in root.rglob("*_seg.nii*") if p.parent.name in p.name})
        if not folders:
            raise BenchmarkInputError(f"{root}: no BraTS subject folders found; expected {self.description}")
        cases = []
        for folder in folders:
            images = []
            for modality in MODALITIES:
                path = _find(folder, modality)
                if path is None:
                    raise BenchmarkInputError(
                        f"{folder}: subject {folder.name!r} is missing modality {modality!r}; "
                        f"expected {folder / f'{folder.name}_{modality}.nii.gz'}"
                    )
                images.append(path)
            cases.append(Case(case_id=folder.name, images=tuple(images), label=_find(folder, "seg")))
        return cases

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Per-modality z-score over the brain foreground, background set to 0 (SI paper 5.1.1, nnU-Net)."""
        return zscore(image, (image != 0).any(axis=0))

    def label_to_regions(self, label: torch.Tensor) -> torch.Tensor:
        label = label[:, 0]
        whole = label > 0
        core = (label == 1) | (label == 4)
        enhancing = label == 4
        return torch.stack([whole, core, enhancing], dim=1)

    def metrics(self, pred_regions: torch.Tensor, true_regions: torch.Tensor, **kwargs) -> dict[str, float]:
        """Default Dice/HD95 per region + ``dice_all``: the SI paper's "All", the Dice of WT, TC and ET
        laid end to end (section 6.1; Table 1 reports it next to WT, TC, ET), not their mean."""
        out = super().metrics(pred_regions, true_regions, **kwargs)
        out["dice_all"] = float(pooled_dice(pred_regions, true_regions)[0])
        return out

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        rng = np.random.default_rng(seed)
        affine = np.diag([240.0 / shape[0], 240.0 / shape[1], 155.0 / shape[2], 1.0])
        for i in range(n_cases):
            subject = f"Synth_BraTS_{i:03d}"
            image, label = brats_subject(shape, rng)
            for c, modality in enumerate(MODALITIES):
                save_nifti(image[c], root / subject / f"{subject}_{modality}.nii.gz", affine=affine)
            save_nifti(label, root / subject / f"{subject}_seg.nii.gz", affine=affine)
