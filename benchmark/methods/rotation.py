"""Rotation prediction alone (Gidaris et al. 2018; Taleb et al. 2020; Tang et al. 2022 section 3.2).

The "Rotation Prediction" row of the DAE paper's Table 4: the Swin-UNETR pretraining pipeline of
``benchmark.blocks.pretexts.swin_ssl`` with only its 4-way rotation loss on.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.pretexts.swin_ssl import SwinSSLConfig, SwinSSLPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class RotationConfig(SwinSSLConfig):
    contrastive_weight: float = 0.0
    reconstruction_weight: float = 0.0


@register_method("rotation")
class RotationPrediction(SwinSSLPretext):
    """Predict the 0/90/180/270° rotation about the z-axis of each view (cross-entropy; Tang et al. 3.2)."""

    Config = RotationConfig
