"""Contrastive coding alone (Chen et al. 2020; Tang et al. 2022 section 3.2).

The "Contrastive Coding" row of the DAE paper's Table 4: the Swin-UNETR pretraining pipeline of
``benchmark.blocks.pretexts.swin_ssl`` with only its NT-Xent loss on (two rotated, cut-out views of each crop are positives).
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.pretexts.swin_ssl import SwinSSLConfig, SwinSSLPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class ContrastiveConfig(SwinSSLConfig):
    rotation_weight: float = 0.0
    reconstruction_weight: float = 0.0


@register_method("contrastive")
class ContrastiveCoding(SwinSSLPretext):
    """NT-Xent between two augmented views of each crop over the global batch (Tang et al. 3.2; τ = 0.5 as in their code)."""

    Config = ContrastiveConfig
