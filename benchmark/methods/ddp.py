"""Decoder denoising pretraining (DDP, Brempong et al. 2022) as set up in the LADP paper (section II.C).

The input is noised with x' = √γ·x + √(1−γ)·ε, ε ~ N(0, I), and the U-Net predicts the noise
ε with an L2 loss (LADP eq. 5-6 with σa = σb = 1). As in DDP, the encoder f_θ can be frozen so
that only the decoder g_φ is pretrained; the LADP paper finds that best (section III.A). The
shared pretext is ``benchmark.blocks.pretexts.denoising``.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.pretexts.denoising import DenoisingConfig, DenoisingPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class DDPConfig(DenoisingConfig):
    """γ = 0.95 and a frozen encoder (LADP II.C, III.A)."""


@register_method("ddp")
class DecoderDenoising(DenoisingPretext):
    """DDP: predict ε from √γ·x + √(1−γ)·ε with an L2 loss, encoder optionally frozen (LADP II.C eq. 5-6, III.A)."""

    Config = DDPConfig
