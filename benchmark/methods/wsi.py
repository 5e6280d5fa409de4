"""Within-patient source identification (SI paper section 5.2.2): all N sources are slices of one patient."""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.pretexts.source_identification import SIConfig, SourceIdentificationPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class WSIConfig(SIConfig):
    """The CSI settings (SI paper 5.2)."""


@register_method("wsi")
class WithinPatientSI(SourceIdentificationPretext):
    """Within-patient SI: mixtures of N axial slices of the SAME patient, target shared (SI paper 5.2.2)."""

    Config = WSIConfig
    same_patient = True
