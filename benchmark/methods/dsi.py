"""Denoising source identification (SI paper section 5.2.3): CSI with the non-target sources
replaced by Gaussian noise of zero mean and unit variance."""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.noise import replace_non_targets_with_noise
from benchmark.blocks.pretext import DataSpec
from benchmark.blocks.pretexts.source_identification import SIConfig, SourceIdentificationPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class DSIConfig(SIConfig):
    """The CSI settings (SI paper 5.2)."""


@register_method("dsi")
class DenoisingSI(SourceIdentificationPretext):
    """Denoising SI: the target mixed with N(0, 1) noise sources instead of other patients (SI paper 5.2.3)."""

    Config = DSIConfig

    @classmethod
    def data_spec(cls, cfg) -> DataSpec:
        # Only the target slice is real data; the others are overwritten with noise, so they need
        # not come from other patients (and the foreground-overlap rule does not apply to noise).
        return DataSpec(kind="source_pool", pool_size=cfg.pool_size, same_patient=True)

    def prepare_pool(self, pool, *, generator):
        return replace_non_targets_with_noise(pool, generator=generator)
