"""Denoising source identification (SI paper section 5.2.3): CSI with the non-target sources
replaced by Gaussian noise of zero mean and unit variance."""
from __future__ import annotations

import torch

from benchmark.methods.base import DataSpec, register_method
from benchmark.methods.csi import CrossPatientSI


def replace_non_targets_with_noise(pool: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """pool [B, N, C, H, W] -> same, with pool[:, 1:] replaced by N(0, 1) noise; the target pool[:, 0] is kept."""
    noise = torch.randn(pool[:, 1:].shape, generator=generator).to(device=pool.device, dtype=pool.dtype)
    return torch.cat([pool[:, :1], noise], dim=1)


@register_method("dsi")
class DenoisingSI(CrossPatientSI):
    """Denoising SI: the target mixed with N(0, 1) noise sources instead of other patients (SI paper 5.2.3)."""

    @classmethod
    def data_spec(cls, cfg) -> DataSpec:
        # Only the target slice is real data; the others are overwritten with noise, so they need
        # not come from other patients (and the foreground-overlap rule does not apply to noise).
        return DataSpec(kind="source_pool", pool_size=cfg.pool_size, same_patient=True)

    def forward(self, batch, *, generator):
        return super().forward({"sources": replace_non_targets_with_noise(batch["sources"], generator=generator)}, generator=generator)
