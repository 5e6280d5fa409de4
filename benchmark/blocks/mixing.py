"""Source-pool mixing of the SI paper (Zhang et al., "Source Identification", section 3.3, eq. 12)."""
from __future__ import annotations

import torch


def convex_weights(shape: tuple[int, ...], *, generator: torch.Generator) -> torch.Tensor:
    """Weights uniform on the simplex over the last dim (Dirichlet(1,...,1)): all in [0, 1], summing to 1."""
    u = torch.rand(shape, generator=generator).clamp_min(1e-12)
    e = -torch.log(u)
    return e / e.sum(dim=-1, keepdim=True)


def mix_sources(
    pool: torch.Tensor, *, sources_per_mixture: int, num_mixtures: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 12 generalised: M̃ mixtures of Ñ sources each, source 0 of the pool in every mixture.

    pool: [B, N, C, *spatial] (2D slices in the SI paper; any spatial dims work). Non-target
    sources are distinct across mixtures (drawn without replacement from pool[1:]). Returns
    mixtures [B, M̃, C, *spatial], weights [B, M̃, Ñ] and the pool index of each weighted source
    [B, M̃, Ñ] (column 0 is always the target, index 0).
    """
    b, n = pool.shape[:2]
    others = sources_per_mixture - 1
    order = torch.argsort(torch.rand(b, n - 1, generator=generator), dim=1) + 1  # random non-target order
    chosen = order[:, : num_mixtures * others].reshape(b, num_mixtures, others)
    index = torch.cat([torch.zeros(b, num_mixtures, 1, dtype=torch.long), chosen], dim=2)  # [B, M̃, Ñ]
    weights = convex_weights((b, num_mixtures, sources_per_mixture), generator=generator)
    # Random draws happen on the generator's (CPU) device, then move to the data's device.
    index, weights = index.to(pool.device), weights.to(device=pool.device, dtype=pool.dtype)
    batch_index = torch.arange(b, device=pool.device).view(b, 1, 1)
    sources = pool[batch_index, index]  # [B, M̃, Ñ, C, *spatial]
    mixtures = (weights.view(*weights.shape, *([1] * (pool.dim() - 2))) * sources).sum(dim=2)
    return mixtures, weights, index


def foreground_overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True if the foregrounds (any non-zero channel) of two slices [C, H, W] overlap (SI paper 5.2 exclusion rule)."""
    return bool(((a != 0).any(dim=0) & (b != 0).any(dim=0)).any())
