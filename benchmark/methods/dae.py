"""Disruptive autoencoder (Valanarasu et al., "Disruptive Autoencoders", section 2, appendix G).

The input is disrupted by Gaussian noise (eq. 1) and by down- then up-sampling with linear
interpolation by a factor ε (eq. 2); its tokens are then locally masked (a ratio r of the
embedding channels of every token set to zero) and Swin-UNETR reconstructs the clean input
with an L1 loss, plus the cross-modal contrastive loss (CMCL, eq. 3-5) on the bottleneck
features: samples of the same modality (the "meta-data") are positives.

The paper pretrains on single-modality volumes from a curated multi-modal set (CT and MRI
sequences), so every pretraining sample here is ONE channel of a case with its modality
index (``DataSpec(kind="modality_crops")``); the one-channel input layer is inflated to the
task's channels at fine-tuning (``inflate_single_channel_input``).

Ablations of Tables 5 and 6 are switches of the same method: ``noise`` / ``downsampling`` /
``local_masking`` (one on, the others off: "Noise", "Downsampling", "Local Masking") and
``cmcl=False`` ("DAE w/o CMCL"); e.g. ``--hparam dae.cmcl=false``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from torch import nn

from benchmark.methods.base import DataSpec, PretextTask, Recipe, register_method
from benchmark.methods.distributed import gather_no_grad, gather_with_grad


@dataclass(frozen=True)
class DAEConfig:
    mask_ratio: float = 0.6  # r, section 3.2
    # σ is the noise VARIANCE, not the standard deviation: appendix G.1 says "the parameter σ is
    # the variance of the gaussian noise", so the added noise has std sqrt(σ) ≈ 0.316 at σ = 0.1.
    noise_variance: float = 0.1
    downsample_factor: float = 4.0  # ε, section 3.2
    # CMCL (eq. 3-4): "t ... is set to 0.07", "α in CMCL is set to 0.05 to match the range of both losses".
    cmcl_temperature: float = 0.07
    cmcl_weight: float = 0.05
    projection_dim: int = 128  # CMCL embedding size: not given in the paper (CLIP-style linear projection)
    # Ablations (Tables 5-6): which disruptions and losses are on.
    noise: bool = True
    downsampling: bool = True
    local_masking: bool = True
    cmcl: bool = True

    def __post_init__(self) -> None:
        if not (self.noise or self.downsampling or self.local_masking):
            raise ValueError("DAEConfig: at least one of noise, downsampling, local_masking must be on (else nothing is disrupted)")
        if self.cmcl_temperature <= 0:
            raise ValueError(f"cmcl_temperature must be > 0, got {self.cmcl_temperature}")
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


def cross_modal_contrastive_loss(features: torch.Tensor, modality: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """CMCL without its weight α (eq. 3-4): symmetric cross-entropy over the batch similarity matrix.

    features [B, D] (any scale; L2-normalised here, "cosine similarity" in the text), modality [B]
    integer metadata. z_sim = z zᵀ / t; the self-pair is excluded (it is trivially the most
    similar), and the target of row i spreads over the other samples of the same modality
    (z_label, several positives per row unlike CLIP's one). CE is taken along rows and along
    columns ("applied across each axis") and averaged. Rows without a positive are skipped;
    a batch with a single modality, or no two samples of one, has no contrast: the loss is 0.
    Reading t as a divisor: eq. 3 writes exp(t), CLIP's learnable logit scale initialised to
    log(1/0.07); the text fixes t = 0.07, i.e. logits scaled by 1/0.07.
    """
    z = F.normalize(features, dim=1)
    logits = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive = (modality[:, None] == modality[None, :]) & ~eye
    has_positive = positive.any(dim=1)
    has_negative = (~positive & ~eye).any(dim=1)
    rows = has_positive & has_negative
    if not rows.any():
        return features.sum() * 0.0  # keeps the graph (DDP expects every parameter used)
    target = positive.float() / positive.sum(dim=1, keepdim=True).clamp(min=1)
    logits = logits.masked_fill(eye, float("-inf"))
    per_row = -(target * logits.log_softmax(dim=1).masked_fill(eye, 0.0)).sum(dim=1)
    per_col = -(target.T * logits.T.log_softmax(dim=1).masked_fill(eye, 0.0)).sum(dim=1)
    return 0.5 * (per_row[rows].mean() + per_col[rows].mean())


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

    def __init__(self, backbone, cfg, *, in_channels):
        super().__init__(backbone, cfg, in_channels=in_channels)
        # CMCL head on the pooled bottleneck (16 x feature_size channels for Swin-UNETR).
        self.projection = nn.Linear(backbone.bottleneck_channels, cfg.projection_dim) if cfg.cmcl else None

    @classmethod
    def backbone_channels(cls, cfg, *, in_channels):
        return 1, 1  # single-modality volumes in, the same volume out (see module docstring)

    @classmethod
    def data_spec(cls, cfg):
        return DataSpec(kind="modality_crops")

    def disrupt(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Image-space perturbations, noise then downsampling (section 2, 'In DAEs ...')."""
        if self.cfg.noise:
            x = add_gaussian_noise(x, variance=self.cfg.noise_variance, generator=generator)
        if self.cfg.downsampling:
            x = down_up_sample(x, factor=self.cfg.downsample_factor)
        return x

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, 1, D, H, W], one modality per sample
        disrupted = self.disrupt(x, generator=generator)
        hooks, bottleneck = [], {}
        if self.cfg.local_masking:
            def mask_tokens(_module, _inputs, tokens):  # tokens [B, C, D', H', W'] after tokenisation
                return local_channel_mask(tokens, ratio=self.cfg.mask_ratio, generator=generator)[0]

            hooks.append(self.backbone.patch_embed.register_forward_hook(mask_tokens))
        if self.cfg.cmcl:  # the encoder's deepest stage, read during the reconstruction forward
            hooks.append(self.backbone.net.swinViT.register_forward_hook(lambda _m, _i, out: bottleneck.update(z=out[-1])))
        try:
            reconstruction = self.backbone(disrupted)
        finally:
            for handle in hooks:
                handle.remove()
        l1 = F.l1_loss(reconstruction, x)
        out = {"loss": l1, "l1": l1.detach()}
        if self.cfg.cmcl:
            z = self.projection(bottleneck["z"].flatten(2).mean(dim=2))  # [B, D]
            # Over the global batch: positives and negatives come from every worker's samples.
            cmcl = cross_modal_contrastive_loss(gather_with_grad(z), gather_no_grad(batch["modality"]), temperature=self.cfg.cmcl_temperature)
            out["loss"] = l1 + self.cfg.cmcl_weight * cmcl
            out["cmcl"] = cmcl.detach()
        return out
