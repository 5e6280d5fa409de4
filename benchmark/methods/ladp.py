"""Label-aware denoising pretraining (LADP, Ninalga; paper section II.C, eq. 2-6).

DDP (``benchmark.methods.ddp``) with non-isotropic noise: the noise W has standard deviation σa
inside a region of interest C(y) and σb elsewhere (eq. 4), x' = √γ·x + √(1−γ)·W (eq. 5), and the
U-Net predicts W with an L2 loss (eq. 6). C(y) is CarveMix's region (eq. 2): the voxels whose
signed distance D to the lesion contour is at most λ, with λ drawn per image from eq. 3, so the
region is the lesion shrunk (λ < 0) or grown (λ > 0) by a random margin.

Eq. 1 writes the per-pixel factor as the square root of a matrix of standard deviations, but
eq. 4, which defines the W that is actually added and predicted, draws W ~ N(0, σa²) / N(0, σb²):
we follow eq. 4, so σa and σb are standard deviations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from benchmark.methods.base import register_method
from benchmark.methods.ddp import DDPConfig, DecoderDenoising


@dataclass(frozen=True)
class LADPConfig(DDPConfig):
    # LADP II.C: "based on experiments we fix σa = 1.5 and σb = 0.8" (standard deviations, eq. 4)
    sigma_a: float = 1.5  # inside the CarveMix region of interest
    sigma_b: float = 0.8  # elsewhere

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sigma_a < 0 or self.sigma_b < 0:
            raise ValueError(f"noise standard deviations must be >= 0, got sigma_a={self.sigma_a}, sigma_b={self.sigma_b}")


# ---- CarveMix region of interest (CarveMix eq. 3 as restated by LADP eq. 2-3) ---------------------
def signed_distance(mask: torch.Tensor, *, spacing: tuple[float, ...] | None = None) -> torch.Tensor:
    """D(·|y): Euclidean distance to the lesion contour, NEGATIVE inside the lesion, positive outside.

    mask: bool [*spatial] (2D or 3D), True = lesion. As in the CarveMix code (``get_distance``):
    inside, minus the distance to the nearest background voxel; outside, the distance to the
    nearest lesion voxel (scipy's exact EDT, in voxels unless ``spacing`` is given). So a
    boundary voxel is at -1 inside and +1 just outside; D ≤ 0 is exactly the lesion.
    An empty mask gives +inf everywhere and a full one -inf (no contour). Float32 on mask's device.
    """
    m = mask.detach().to("cpu", torch.bool).numpy()
    if not m.any():
        out = np.full(m.shape, np.inf, dtype=np.float32)
    elif m.all():
        out = np.full(m.shape, -np.inf, dtype=np.float32)
    else:
        inside = ndimage.distance_transform_edt(m, sampling=spacing)  # to the nearest background voxel
        outside = ndimage.distance_transform_edt(~m, sampling=spacing)  # to the nearest lesion voxel
        out = np.where(m, -inside, outside).astype(np.float32)
    return torch.from_numpy(out).to(mask.device)


def carvemix_lambda(distance: torch.Tensor, *, generator: torch.Generator) -> float:
    """λ ~ ½·U(−½|D_min|, 0) + ½·U(0, |D_min|) (CarveMix eq. 3 = LADP eq. 3), D_min = min D.

    Always draws two uniforms from ``generator`` (mixture component, then value), so every image
    consumes the same randomness; an image without a lesion (D_min not negative/finite) gets λ = 0.
    """
    component, u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    d_min = float(distance.min())
    if not np.isfinite(d_min) or d_min >= 0:
        return 0.0
    size = abs(d_min)  # the lesion's depth: largest distance of a lesion voxel to the contour
    return -0.5 * size * u if component < 0.5 else size * u


def carvemix_region(mask: torch.Tensor, *, generator: torch.Generator, spacing: tuple[float, ...] | None = None) -> torch.Tensor:
    """C(y) = [D(·|y) ≤ λ] with λ from ``carvemix_lambda`` (LADP eq. 2): bool [*spatial] like ``mask``.

    λ > 0 grows the lesion by a margin λ, λ < 0 shrinks it by |λ| (at most half its depth).
    """
    distance = signed_distance(mask, spacing=spacing)
    return distance <= carvemix_lambda(distance, generator=generator)


def carvemix_regions(label: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """One CarveMix region per image of a batch: label [B, 1, *spatial] raw values (> 0 = lesion) -> bool [B, 1, *spatial]."""
    if label.dim() < 4 or label.shape[1] != 1:
        raise ValueError(f"label must be [B, 1, *spatial] (2D or 3D), got shape {tuple(label.shape)}")
    return torch.stack([carvemix_region(label[b, 0] > 0, generator=generator)[None] for b in range(label.shape[0])])


def region_noise_std(region: torch.Tensor, sigma_in: float, sigma_out: float) -> torch.Tensor:
    """The diagonal of I(σa, σb | c) (eq. 1, 4): ``sigma_in`` where ``region`` is True, ``sigma_out`` elsewhere (float32)."""
    return torch.where(region, torch.tensor(float(sigma_in), device=region.device), torch.tensor(float(sigma_out), device=region.device))


@register_method("ladp")
class LabelAwareDenoising(DecoderDenoising):
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
