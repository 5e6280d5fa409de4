"""BONBID-HIE 2023: neonatal hypoxic-ischaemic lesion segmentation on ADC + Z_ADC (Bao et al. 2023), LADP paper.

Layout of the public release (zenodo.org/record/8104103), one folder per map::

    ROOT/1ADC_ss/MGHNICU_010-VISIT_01-ADC_ss.mha                             skull-stripped ADC
    ROOT/2Z_ADC/Zmap_MGHNICU_010-VISIT_01-ADC_smooth2mm_clipped10.mha        Z_ADC (vs healthy neonates)
    ROOT/3LABEL/MGHNICU_010-VISIT_01_lesion.mha                              lesion mask (0/1)

The release is MetaImage (``.mha``, as the challenge code reads it with SimpleITK) and is read as released, no
conversion step: ``tasks/nifti.py`` reads ``.mha`` through SimpleITK and returns it like NIfTI (array [X, Y, Z] in
RAS orientation, RAS affine, the same voxel spacing). A copy converted to NIfTI under the same folder and file names
(``.nii.gz`` / ``.nii`` instead of ``.mha``) reads to the same volumes; the synthetic counterpart is written as NIfTI.

Normalisation (LADP paper, section II.B): each map z-scored over the brain, "background values ...
assigned a constant value of −6"; the brain is where the skull-stripped ADC is > 0. The paper's 2D
protocol upscales axial slices to 256² (``inplane``, applied by benchmark.volumes.load_volumes in the
paper profile); the 2D backbones then train on 256² slices and predict the test cases there, and the
metrics are computed on each case's native grid at its native spacing, as the challenge scores a
submission: the predicted probabilities are resampled back (``benchmark.inference.to_grid``) and
compared with the native label (``Volume.native``); the lesion-size group reads the native image too.

Metrics as the challenge (``bonbidhie_eval/evaluation.py``) and the LADP paper's Table 1: lesion
Dice, MASD, NSD at 2 mm with the challenge's empty-mask rules (tasks/metrics.py), Dice again by
lesion size (< 1 %, 1-5 %, > 5 % of the brain), plus the default HD95.

Fine-tuning and testing as the LADP paper (section II.D), the recipe of every method of its Table 1,
so they are this task's defaults (``--finetune-loss auto``, ``--tta auto``; ``default`` / ``none``
give the suite's Dice + CE and plain predictions):

* loss eq. 7, L_BCE + L_Dice + 3·L_Focal (``LADPLoss``);
* test-time augmentation: the test prediction is the mean over the flips seen in training
  ("horizontally and vertically": the in-plane axes), ``benchmark.inference.predict_volume``.
  Table 2 credits it with +0.5 Dice overall (+0.6 on lesions < 1 %), for every method alike; the
  published HIE numbers were measured with it. Model selection on the validation cases predicts
  without it (the paper uses TTA "to create a prediction on a test image").
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, SegmentationTask, register_task
from tasks.intensity import zscore
from tasks.metrics import lesion_size_bucket, masd, nsd
from tasks.nifti import save_nifti
from tasks.synthetic import hie_subject

BACKGROUND = -6.0  # LADP paper: normalised background value
ADC_DIR, ZADC_DIR, LABEL_DIR = "1ADC_ss", "2Z_ADC", "3LABEL"
_ADC_NAME = re.compile(r"(?P<case>.+)-ADC_ss(?P<ext>\.nii\.gz|\.nii|\.mha)")


def _paths(root: Path, case: str, ext: str) -> tuple[Path, Path, Path]:
    return (root / ADC_DIR / f"{case}-ADC_ss{ext}", root / ZADC_DIR / f"Zmap_{case}-ADC_smooth2mm_clipped10{ext}",
            root / LABEL_DIR / f"{case}_lesion{ext}")


@register_task("hie")
class BONBIDHIE(SegmentationTask):
    description = ("BONBID-HIE 2023 as released (.mha) or as NIfTI (.nii.gz): ROOT/1ADC_ss/<case>-ADC_ss.mha, "
                   "ROOT/2Z_ADC/Zmap_<case>-ADC_smooth2mm_clipped10.mha, ROOT/3LABEL/<case>_lesion.mha")
    channels = ("ADC", "Z_ADC")
    label_values = (0, 1)
    region_names = ("lesion",)
    extra_metrics = ("masd", "nsd", "dice_size_lt1", "dice_size_1to5", "dice_size_gt5")
    multilabel = False  # softmax over background / lesion
    synthetic_cases = 15
    synthetic_shape = (64, 64, 32)
    spatial_aug = "ladp"  # LADP paper II.D: random horizontal and vertical flips
    inplane = ("resize", (256, 256))  # LADP paper II.B: "each image is upscaled to 256 x 256 pixels"
    finetune_losses = ("default", "dicefocal")  # --finetune-loss: make_loss(loss)
    paper_loss = "dicefocal"  # LADP paper eq. 7 (II.D)
    paper_tta = "flip"  # LADP paper II.D: mean prediction over the training flips

    def find_cases(self, root: Path) -> list[Case]:
        adc_dir = root / ADC_DIR
        if not adc_dir.is_dir():
            raise BenchmarkInputError(f"{root}: missing folder {ADC_DIR!r}; expected {self.description}")
        cases = []
        for adc in sorted(adc_dir.iterdir()):
            match = _ADC_NAME.fullmatch(adc.name)
            if match is None:
                continue
            adc, z_adc, label = _paths(root, match["case"], match["ext"])
            for path in (z_adc, label):
                if not path.exists():
                    raise BenchmarkInputError(f"{adc}: case {match['case']!r} has no {path.parent.name} file; expected {path}")
            cases.append(Case(case_id=match["case"], images=(adc, z_adc), label=label))
        if not cases:
            raise BenchmarkInputError(f"{adc_dir}: no <case>-ADC_ss.mha or .nii.gz files; expected {self.description}")
        return cases

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """z-score of ADC and Z_ADC over the brain (ADC > 0), background −6 (LADP paper, section II.B)."""
        return zscore(image, image[0] > 0, background=BACKGROUND)

    def label_to_regions(self, label: torch.Tensor) -> torch.Tensor:
        return label == 1  # [B, 1, ...]

    def make_loss(self, loss: str = "default") -> torch.nn.Module:
        """``default``: the suite's softmax Dice + CE; ``dicefocal``: the LADP paper's eq. 7 (``LADPLoss``)."""
        if loss == "dicefocal":
            return LADPLoss()
        if loss != "default":
            raise ValueError(f"hie: unknown fine-tuning loss {loss!r}; expected one of {list(self.finetune_losses)}")
        return super().make_loss()

    def metrics(self, pred_regions: torch.Tensor, true_regions: torch.Tensor, *, spacing, image=None, label=None) -> dict[str, float]:
        """dice_lesion, hd95_lesion (+ their _mean), masd, nsd, and dice_size_<lt1|1to5|gt5>: the case's
        Dice again under its lesion-size group only (lesion volume as % of the brain, brain = voxels
        above the −6 background of the normalised ADC, ``image``)."""
        if image is None:
            raise ValueError("hie metrics need image= (the normalised case image) for the brain volume of the lesion-size groups")
        out = super().metrics(pred_regions, true_regions, spacing=spacing)
        out["masd"] = float(masd(pred_regions, true_regions, spacing=spacing)[0, 0])
        out["nsd"] = float(nsd(pred_regions, true_regions, spacing=spacing)[0, 0])
        brain = torch.as_tensor(image)[0].cpu() > BACKGROUND  # resampled edges lie between −6 and brain values: brain
        percent = 100.0 * float(true_regions[0, 0].sum()) / max(int(brain.sum()), 1)
        out[f"dice_size_{lesion_size_bucket(percent)}"] = out["dice_lesion"]
        return out

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        # Lesion load (% of the brain) cycled over the cases: none, and each of the paper's size groups,
        # < 1 % twice as often (over half of BONBID-HIE patients have lesions under 1 % of the brain).
        loads = [(0.0, 0.0), (0.15, 0.6), (1.3, 3.2), (6.0, 14.0), (0.15, 0.6)]
        rng = np.random.default_rng(seed)
        # A 160 x 160 x 120 mm field of view. The release's LPS images keep an identity direction;
        # as NIfTI (RAS) that is x and y flipped.
        affine = np.diag([-160.0 / shape[0], -160.0 / shape[1], 120.0 / shape[2], 1.0])
        for i in range(n_cases):
            low, high = loads[i % len(loads)]
            adc, z_adc, label = hie_subject(shape, rng, lesion_percent=rng.uniform(low, high))
            for array, path in zip((adc, z_adc, label), _paths(root, f"MGHNICU_{i + 1:03d}-VISIT_01", ".nii.gz")):
                save_nifti(array, path, affine=affine)


class LADPLoss(torch.nn.Module):
    """LADP eq. 7: L_ft(p, y) = L_BCE(p, y) + L_Dice(p, y) + 3·L_Focal(p, y), on the lesion probability p.

    MONAI ``DiceFocalLoss`` is λ_dice·Dice + λ_focal·Focal, so eq. 7 is ``DiceFocalLoss(sigmoid=True,
    lambda_dice=1, lambda_focal=3)`` plus a separate BCE term (DiceFocalLoss has none). The focal loss is
    Lin et al.'s [24] per voxel, −(1 − p_t)^γ·log p_t with γ = 2 (their default, and the authors' code's)
    and no α-balancing (the paper names none). Dice is pooled over the batch (``batch=True``), as the
    authors' code flattens the whole batch and as the suite's default loss does.

    The network has two softmax outputs (background, lesion; ``BONBIDHIE.multilabel`` is False), and the
    softmax lesion probability is exactly sigmoid(l_lesion − l_background): that difference is the one
    binary logit eq. 7 is computed on, against the lesion channel of the one-hot (or mixup-blended) target.

    The authors' code (github.com/Ninalgad/LADP, loss.py) differs from the text: its "focal" term is
    0.8·(1 − e^(−BCE))²·BCE of the batch-mean BCE (one number, not per voxel) and its Dice is smoothed by 0.1;
    we follow the paper and the focal loss it cites.
    """

    def __init__(self, gamma: float = 2.0, focal_weight: float = 3.0) -> None:
        from monai.losses import DiceFocalLoss

        super().__init__()
        self.dice_focal = DiceFocalLoss(sigmoid=True, batch=True, gamma=gamma, lambda_dice=1.0, lambda_focal=focal_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # logits, target: [B, 2, *spatial] (background, lesion)
        if logits.shape[1] != 2 or target.shape != logits.shape:
            raise ValueError(f"LADP loss: expected logits and target [B, 2, *spatial] (background, lesion), got {tuple(logits.shape)} "
                             f"and {tuple(target.shape)}")
        z = logits[:, 1:2] - logits[:, 0:1]  # [B, 1, *spatial] binary lesion logit: sigmoid(z) = softmax(logits)[:, 1]
        y = target[:, 1:2]
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y) + self.dice_focal(z, y)
