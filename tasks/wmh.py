"""WMH 2017: white-matter hyperintensity segmentation on T1 + FLAIR (Kuijf et al. 2019), SI paper 5.1.2.

Layout (as released, training and test alike): ``ROOT/<site>/<subject>/pre/{T1,FLAIR}.nii.gz`` with
``ROOT/<site>/<subject>/wmh.nii.gz``; sites are ``Utrecht``, ``Singapore``, ``GE3T`` and, in the
test set, one level deeper under ``Amsterdam/`` (``GE1T5``, ``Philips_VU .PETMR_01.``, ...). The
``pre/`` images are the challenge's preprocessed ones (bias-corrected, T1 registered to FLAIR);
``orig/`` folders are not read.

Labels: 0 background, 1 WMH, 2 "other pathology". Label 2 is ignored, as in the challenge's
``evaluation.py``, which removes label-2 voxels from the prediction before scoring:

- metrics: the region is WMH = {1}; predicted voxels on label 2 are dropped (``metrics``), so they
  are neither false positives nor anything else;
- loss: label-2 voxels carry zero weight (``loss_target`` adds a weight channel, ``make_loss``
  masks Dice and BCE with it), so the network is taught neither that they are WMH nor that they
  are not.

Normalisation as the SI paper: "Gaussian normalization ... inside the brain foreground similar to
the BraTS dataset" (z-score per modality over non-zero voxels).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, SegmentationTask, register_task
from tasks.brats import BraTS
from tasks.metrics import lesion_recall
from tasks.nifti import save_nifti
from tasks.synthetic import wmh_subject

MODALITIES = ("T1", "FLAIR")  # SI paper: "T1-weighted and FLAIR MR sequences"
OTHER_PATHOLOGY = 2


def _find(folder: Path, stem: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        if (folder / f"{stem}{ext}").exists():
            return folder / f"{stem}{ext}"
    return None


class _IgnoreMaskedDiceBCE(torch.nn.Module):
    """Dice + BCE on one sigmoid channel, voxels weighted by the target's second channel (0 on label 2).

    MONAI ``MaskedDiceLoss`` (batch Dice, like the other tasks' ``DiceCELoss(batch=True)``) plus a
    BCE averaged over the weighted voxels.
    """

    def __init__(self):
        super().__init__()
        from monai.losses import MaskedDiceLoss

        self.dice = MaskedDiceLoss(sigmoid=True, batch=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        wmh, weight = target[:, :1], target[:, 1:2]  # [B, 1, *spatial] each
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, wmh, weight=weight, reduction="sum")
        return self.dice(logits, wmh, mask=weight) + bce / weight.sum().clamp_min(1.0)


@register_task("wmh")
class WMH(SegmentationTask):
    validation = 10  # SI paper 5.1: 10 WMH subjects validate
    description = "WMH 2017: ROOT/<site>/<subject>/pre/{T1,FLAIR}.nii.gz with ROOT/<site>/<subject>/wmh.nii.gz"
    channels = MODALITIES
    label_values = (0, 1, OTHER_PATHOLOGY)
    region_names = ("wmh",)  # dice_wmh, as the SI paper's Table 1
    extra_metrics = ("lesion_recall",)
    multilabel = True  # one sigmoid output (WMH); label 2 is masked, not a class
    synthetic_cases = 15  # 5 per training site
    synthetic_shape = (64, 64, 32)
    spatial_aug = "si"  # SI paper 5.5.3: rotation, scaling, flipping, elastic deformation
    inplane = ("crop_pad", (200, 200))  # SI paper 5.1.2: "centre-cropped/padded ... 200 x 200 x Z"

    def find_cases(self, root: Path) -> list[Case]:
        # A subject folder holds pre/FLAIR or wmh.nii.gz; every folder next to a subject must be one too,
        # so a subject missing its files is reported instead of skipped.
        subjects = {p.parent.parent for p in root.rglob("FLAIR.nii*") if p.parent.name == "pre"}
        subjects |= {p.parent for p in root.rglob("wmh.nii*")}
        if not subjects:
            raise BenchmarkInputError(f"{root}: no WMH subject folders found; expected {self.description}")
        for site in {s.parent for s in subjects}:
            for folder in sorted(p for p in site.iterdir() if p.is_dir() and p not in subjects and not p.name.startswith(".")):
                if any(folder in s.parents for s in subjects):
                    continue  # a scanner folder grouping subjects (Amsterdam/GE1T5/<subject>)
                raise BenchmarkInputError(f"{folder}: subject folder without images; expected {folder / 'pre' / 'FLAIR.nii.gz'}, "
                                          f"{folder / 'pre' / 'T1.nii.gz'} and {folder / 'wmh.nii.gz'}")
        cases = []
        for folder in sorted(subjects):
            images = []
            for modality in MODALITIES:
                path = _find(folder / "pre", modality)
                if path is None:
                    raise BenchmarkInputError(f"{folder}: subject is missing modality {modality!r}; expected {folder / 'pre' / f'{modality}.nii.gz'}")
                images.append(path)
            label = _find(folder, "wmh")
            if label is None:
                raise BenchmarkInputError(f"{folder}: subject has no label; expected {folder / 'wmh.nii.gz'}")
            case_id = "-".join(folder.relative_to(root).parts)  # subject numbers are unique, the site keeps ids readable
            cases.append(Case(case_id=case_id, images=tuple(images), label=label))
        return cases

    def normalize(self, image: np.ndarray) -> np.ndarray:
        return BraTS.normalize(self, image)  # same recipe as BraTS (SI paper 5.1.2)

    def label_to_regions(self, label: torch.Tensor) -> torch.Tensor:
        return label == 1  # [B, 1, ...]: WMH only; label 2 is not a region

    def loss_target(self, label: torch.Tensor) -> torch.Tensor:
        """label [B, 1, *spatial] -> float [B, 2, *spatial]: WMH target and its weight (0 on label 2)."""
        return torch.cat([label == 1, label != OTHER_PATHOLOGY], dim=1).float()

    def make_loss(self) -> torch.nn.Module:
        return _IgnoreMaskedDiceBCE()

    def metrics(self, pred_regions: torch.Tensor, true_regions: torch.Tensor, *, spacing, image=None, label=None) -> dict[str, float]:
        """Dice and HD95 of WMH, and ``lesion_recall`` (share of true 3D-connected lesions detected).

        With ``label``, predicted voxels on label 2 are removed first (challenge ``evaluation.py``:
        ``maskedResultImage = sitk.Mask(resultImage, nonWMHImage)``).
        """
        if label is not None:
            pred_regions = pred_regions & (label.to(pred_regions.device) != OTHER_PATHOLOGY)
        out = super().metrics(pred_regions, true_regions, spacing=spacing, image=image)
        out["lesion_recall"] = lesion_recall(pred_regions[0, 0], true_regions[0, 0])
        return out

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        sites = ("Utrecht", "Singapore", "GE3T")  # the training sites, subjects numbered 0.., 50.., 100..
        rng = np.random.default_rng(seed)
        # Field of view of an axial FLAIR of 240 x 240 x 48 voxels of 0.96 x 0.96 x 3 mm (Utrecht).
        affine = np.diag([230.0 / shape[0], 230.0 / shape[1], 144.0 / shape[2], 1.0])
        for i in range(n_cases):
            site = i % len(sites)
            subject = root / sites[site] / str(50 * site + i // len(sites))
            image, label = wmh_subject(shape, rng)
            for c, modality in enumerate(MODALITIES):
                save_nifti(image[c], subject / "pre" / f"{modality}.nii.gz", affine=affine)
            save_nifti(label, subject / "wmh.nii.gz", affine=affine)
