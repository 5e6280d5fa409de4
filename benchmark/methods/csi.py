"""Cross-patient source identification (Zhang et al., "Source Identification", sections 3.3, 5.2, 5.4).

The network sees M̃ mixtures that all contain one target slice s_1 (each mixture a convex
combination of Ñ sources, eq. 12) and reconstructs s_1 with eq. 4's L1 + L2 norms (``source_identification_loss``).
Sources are N axial slices of N different patients (CSI, section 5.2.1). The shared pretext is
``benchmark.blocks.pretexts.source_identification``.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.pretexts.source_identification import SIConfig, SourceIdentificationPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class CSIConfig(SIConfig):
    """N, Ñ, M̃ of the SI paper (section 5.2): pool_size 5, sources_per_mixture 3, num_mixtures 2."""


@register_method("csi")
class CrossPatientSI(SourceIdentificationPretext):
    """Cross-patient SI: reconstruct the shared target slice from M̃ mixtures (SI paper eq. 12, section 5.2.1)."""

    Config = CSIConfig
    same_patient = False
