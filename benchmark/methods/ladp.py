"""Label-aware denoising pretraining (LADP, Ninalga; paper section II.C, eq. 2-6).

DDP (the shared pretext ``benchmark.blocks.pretexts.denoising``) with non-isotropic noise: the noise W has standard deviation σa
inside a region of interest C(y) and σb elsewhere (eq. 4), x' = √γ·x + √(1−γ)·W (eq. 5), and the
U-Net predicts W with an L2 loss (eq. 6). C(y) is CarveMix's region (eq. 2): the voxels whose
signed distance D to the lesion contour is at most λ, with λ drawn per image from eq. 3, so the
region is the lesion shrunk (λ < 0) or grown (λ > 0) by a random margin.

Eq. 1 writes the per-pixel factor as the square root of a matrix of standard deviations, but
eq. 4, which defines the W that is actually added and predicted, draws W ~ N(0, σa²) / N(0, σb²):
we follow eq. 4, so σa and σb are standard deviations.

LADP reads the labels of its pretraining cases, so it pretrains once per label fraction on exactly that
fraction's labelled cases (the paper self-pretrains on its fully labelled training split, II.A). Its
crops are centred on a lesion voxel with probability ``foreground_prob`` (default 0.33: nnU-Net's
oversampling, not the paper's, which uses every whole slice once per epoch; see
``LABEL_AWARE_FOREGROUND_PROB``). For the paper's DDP comparison with only the noise different, see
``benchmark.methods.ddp`` (``ddp:cases=labelled``).
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.carvemix import carvemix_regions, region_noise_std
from benchmark.blocks.pretexts.denoising import LABEL_AWARE_FOREGROUND_PROB, DenoisingConfig, DenoisingPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class LADPConfig(DenoisingConfig):
    # LADP II.C: "based on experiments we fix σa = 1.5 and σb = 0.8" (standard deviations, eq. 4)
    sigma_a: float = 1.5  # inside the CarveMix region of interest
    sigma_b: float = 0.8  # elsewhere
    # lesion-centred crops; 0: uniform crops (the paper's whole slices, each once per epoch)
    foreground_prob: float = LABEL_AWARE_FOREGROUND_PROB

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sigma_a < 0 or self.sigma_b < 0:
            raise ValueError(f"noise standard deviations must be >= 0, got sigma_a={self.sigma_a}, sigma_b={self.sigma_b}")


@register_method("ladp")
class LabelAwareDenoising(DenoisingPretext):
    """LADP: DDP whose noise std is σa in the CarveMix region around the lesion and σb elsewhere (eq. 2-6)."""

    Config = LADPConfig
    label_aware = True  # pretraining reads batch["label"] (self-pretraining on the downstream task data, section I)

    def noise_std(self, batch, *, generator):
        if "label" not in batch:
            raise ValueError("ladp is label-aware: its pretraining batch needs 'label' [B, 1, *spatial] (raw label values) next to 'image'")
        image, label = batch["image"], batch["label"]  # [B, C, *spatial], [B, 1, *spatial] raw label values
        if label.shape[0] != image.shape[0] or label.shape[2:] != image.shape[2:]:
            raise ValueError(f"ladp: label {tuple(label.shape)} must be [B, 1, *spatial] of image {tuple(image.shape)}")
        region = carvemix_regions(label, generator=generator)  # [B, 1, *spatial], one λ per image
        # [B, 1, *spatial] broadcasts over channels: every channel of a pixel gets the same σ (eq. 4, W ∈ R^{2×h×w})
        return region_noise_std(region, self.cfg.sigma_a, self.cfg.sigma_b).to(image.dtype)
