"""Within-patient source identification (SI paper section 5.2.2): all N sources are slices of one patient."""
from __future__ import annotations

from benchmark.methods.base import register_method
from benchmark.methods.csi import CrossPatientSI


@register_method("wsi")
class WithinPatientSI(CrossPatientSI):
    """Within-patient SI: mixtures of N axial slices of the SAME patient, target shared (SI paper 5.2.2)."""

    same_patient = True
