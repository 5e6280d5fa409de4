"""Masking noise of the denoising autoencoder (Vincent et al. 2008, section 2.3)."""
from __future__ import annotations

import torch


def masking_noise(x: torch.Tensor, *, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Vincent et al. 2008, 2.3: "for each input x, a fixed number νd of components are chosen at random, and their
    value is forced to 0". x [B, C, *spatial] -> (x with exactly round(ν·d) of each sample's d = C·prod(spatial)
    components zeroed, mask [B, C, *spatial] bool, True = destroyed). The components are drawn from ``generator``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"masking_noise: the destroyed fraction ν must be in [0, 1), got {fraction}")
    b, d = x.shape[0], x[0].numel()
    k = int(round(fraction * d))
    order = torch.rand(b, d, generator=generator).argsort(dim=1)  # a uniform random permutation per sample
    mask = torch.zeros(b, d, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    mask = mask.reshape(x.shape).to(x.device)
    return x.masked_fill(mask, 0.0), mask
