"""Noise and resolution corruptions (DAE eq. 1-2, DDP / LADP eq. 5, the SI paper's denoising SI)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def add_gaussian_noise(x: torch.Tensor, *, variance: float, generator: torch.Generator) -> torch.Tensor:
    """DAE eq. 1: x̂ = x + N(0, σ) with σ a variance (DAE appendix G.1)."""
    noise = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    return x + math.sqrt(variance) * noise


def down_up_sample(x: torch.Tensor, *, factor: float) -> torch.Tensor:
    """DAE eq. 2 with pre-upsampling: linear downsampling by ε, then linear upsampling back to x's size (2D or 3D)."""
    if factor == 1:
        return x
    mode = "trilinear" if x.dim() == 5 else "bilinear"
    low_size = [max(1, int(round(s / factor))) for s in x.shape[2:]]
    low = F.interpolate(x, size=low_size, mode=mode, align_corners=False)
    return F.interpolate(low, size=x.shape[2:], mode=mode, align_corners=False)


def denoising_corruption(
    x: torch.Tensor, *, gamma: float, noise_std: float | torch.Tensor = 1.0, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """LADP eq. 5 / DDP: x' = √γ·x + √(1−γ)·W with W = noise_std·ε, ε ~ N(0, I) drawn from ``generator``.

    x: [B, C, *spatial] (2D or 3D). ``noise_std`` is a scalar or a per-voxel standard deviation
    broadcastable to x (LADP: σa inside the region of interest, σb elsewhere). Returns
    (x', W): W is the noise the network must predict; it is ε itself when noise_std = 1 (DDP).
    """
    eps = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    noise = eps * noise_std  # [B, C, *spatial]; exactly ε when noise_std = 1
    return math.sqrt(gamma) * x + math.sqrt(1.0 - gamma) * noise, noise


def replace_non_targets_with_noise(pool: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """SI paper 5.2.3: pool [B, N, C, H, W] -> same, with pool[:, 1:] replaced by N(0, 1) noise; the target pool[:, 0] is kept."""
    noise = torch.randn(pool[:, 1:].shape, generator=generator).to(device=pool.device, dtype=pool.dtype)
    return torch.cat([pool[:, :1], noise], dim=1)
