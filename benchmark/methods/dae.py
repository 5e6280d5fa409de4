"""Disruptive autoencoder (Valanarasu et al., "Disruptive Autoencoders", section 2, appendix G).

The input is disrupted by Gaussian noise (eq. 1) and by down- then up-sampling with linear
interpolation by a factor ε (eq. 2); its tokens are then locally masked (a ratio r of the
embedding channels of every token set to zero) and Swin-UNETR reconstructs the clean input
with an L1 loss. The cross-modal contrastive term (eq. 3-4) is not part of this file yet.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.methods.base import PretextTask, Recipe, register_method


@dataclass(frozen=True)
class DAEConfig:
    mask_ratio: float = 0.6  # r, section 3.2
    # σ is the noise VARIANCE, not the standard deviation: appendix G.1 says "the parameter σ is
    # the variance of the gaussian noise", so the added noise has std sqrt(σ) ≈ 0.316 at σ = 0.1.
    noise_variance: float = 0.1
    downsample_factor: float = 4.0  # ε, section 3.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio r must be in [0, 1), got {self.mask_ratio}")
        if self.noise_variance < 0:
            raise ValueError(f"noise_variance σ must be >= 0, got {self.noise_variance}")
        if self.downsample_factor < 1:
            raise ValueError(f"downsample_factor ε must be >= 1, got {self.downsample_factor}")


def add_gaussian_noise(x: torch.Tensor, *, variance: float, generator: torch.Generator) -> torch.Tensor:
    """Eq. 1: x̂ = x + N(0, σ) with σ a variance (see DAEConfig)."""
    noise = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    return x + math.sqrt(variance) * noise


def down_up_sample(x: torch.Tensor, *, factor: float) -> torch.Tensor:
    """Eq. 2 with pre-upsampling: linear downsampling by ε, then linear upsampling back to x's size."""
    if factor == 1:
        return x
    mode = "trilinear" if x.dim() == 5 else "bilinear"
    low_size = [max(1, int(round(s / factor))) for s in x.shape[2:]]
    low = F.interpolate(x, size=low_size, mode=mode, align_corners=False)
    return F.interpolate(low, size=x.shape[2:], mode=mode, align_corners=False)


def local_channel_mask(tokens: torch.Tensor, *, ratio: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Local masking: zero exactly round(r·C) of the C embedding channels of EVERY token.

    tokens: [B, C, *spatial] (one token per spatial position). Each token gets its own random
    channel subset, so no token is wholly masked (unlike MAE token masking). Returns the
    masked tokens and the boolean mask (True = zeroed), same shape as ``tokens``.
    """
    channels = tokens.shape[1]
    k = int(round(ratio * channels))
    scores = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # rank of each channel within its token
    mask = ranks < k
    return tokens.masked_fill(mask, 0.0), mask


@register_method("dae")
class DisruptiveAutoencoder(PretextTask):
    """DAE: noise + downsampling + local token-channel masking, L1 reconstruction (DAE paper section 2)."""

    Config = DAEConfig
    default_backbone = "swin_unetr"
    supported_backbones = ("swin_unetr",)
    transfer = "all"  # Swin-UNETR encoder and decoder transfer; the output layer is replaced (section 3.2)
    paper = "disruptive_autoencoders"
    paper_recipe = Recipe(
        steps=20_000,
        batch_size=2,
        lr=4e-4,
        optimizer="adamw",
        weight_decay=1e-5,
        schedule="cosine",
        warmup_steps=500,
        source="DAE paper 3.2: AdamW lr 4e-4, wd 1e-5, 20K iterations, warm-up cosine 500, batch 2/GPU, 96^3 crops",
    )

    def disrupt(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Image-space perturbations, noise then downsampling (section 2, 'In DAEs ...')."""
        return down_up_sample(add_gaussian_noise(x, variance=self.cfg.noise_variance, generator=generator), factor=self.cfg.downsample_factor)

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, D, H, W]
        disrupted = self.disrupt(x, generator=generator)

        def mask_tokens(_module, _inputs, tokens):  # tokens [B, C, D', H', W'] after tokenisation
            return local_channel_mask(tokens, ratio=self.cfg.mask_ratio, generator=generator)[0]

        handle = self.backbone.patch_embed.register_forward_hook(mask_tokens)
        try:
            reconstruction = self.backbone(disrupted)
        finally:
            handle.remove()
        return {"loss": F.l1_loss(reconstruction, x)}
