"""CarveMix's region of interest (Zhang et al. 2023, CarveMix eq. 3), as LADP restates it (eq. 2-3).

Used by LADP's non-isotropic noise (``benchmark.methods.ladp``) and by the CarveMix fine-tuning
augmentation (``benchmark.augmentations``): the voxels whose signed distance D to the lesion
contour is at most λ, with λ drawn per image, so the region is the lesion shrunk (λ < 0) or
grown (λ > 0) by a random margin.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


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
