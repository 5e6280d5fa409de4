"""Swin-UNETR pretraining (Tang et al. 2022, section 3.2): rotation + contrastive coding + inpainting.

The "Swin-UNETR" row of the DAE paper's Table 4; the shared implementation is ``benchmark.blocks.pretexts.swin_ssl``.
"""
from __future__ import annotations

from benchmark.blocks.pretexts.swin_ssl import SwinSSLConfig, SwinSSLPretext
from benchmark.methods.base import register_method


@register_method("swin_unetr_ssl")
class SwinUNETRSSL(SwinSSLPretext):
    """Tang et al. 3.2: L = λ1·L_inpaint + λ2·L_contrast + λ3·L_rot with λ1 = λ2 = λ3 = 1."""

    Config = SwinSSLConfig
