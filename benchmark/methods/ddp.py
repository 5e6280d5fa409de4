"""Decoder denoising pretraining (DDP, Brempong et al. 2022) as set up in the LADP paper (section II.C).

The input is noised with x' = √γ·x + √(1−γ)·ε, ε ~ N(0, I), and the U-Net predicts the noise
ε with an L2 loss (LADP eq. 5-6 with σa = σb = 1). As in DDP, the encoder f_θ can be frozen so
that only the decoder g_φ is pretrained; the LADP paper finds that best (section III.A).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import PretextTask, Recipe, register_method

# LADP paper II.D: "For both phases, the model is optimized using the Adam with a learning rate of
# 0.0001 for 30 epochs with a batch size of 16" -- the same recipe for its DDP baseline (Table 1).
LADP_PAPER_RECIPE = Recipe(
    steps=None,
    epochs=30,
    batch_size=16,
    lr=1e-4,
    optimizer="adam",
    weight_decay=0.0,
    schedule="constant",
    source=(
        "LADP paper II.D: Adam, lr 1e-4, 30 epochs, batch 16, random horizontal/vertical flips; 2D slices of the "
        "BONBID-HIE volumes (II.A), 2 channels ADC + Z_ADC upscaled to 256x256 (II.B). Not stated in the paper: "
        "learning-rate schedule (constant assumed), weight decay (0 assumed), warm-up (none assumed)"
    ),
)


@dataclass(frozen=True)
class DDPConfig:
    gamma: float = 0.95  # γ, LADP II.C: "Similar to DDP we set γ = 0.95"
    # LADP III.A: "Similar to DDP, freezing the encoder parameters (θ in Eq. 6) during the
    # pre-training phase provides the best results." DDP freezes an ImageNet-pretrained encoder; LADP
    # self-pretrains without ImageNet (section I), so a frozen encoder keeps its random initialisation.
    freeze_encoder: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma γ must be in (0, 1) (signal fraction of x' = √γ·x + √(1−γ)·ε), got {self.gamma}")


def denoising_corruption(
    x: torch.Tensor, *, gamma: float, noise_std: float | torch.Tensor = 1.0, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """LADP eq. 5 / DDP: x' = √γ·x + √(1−γ)·W with W = noise_std·ε, ε ~ N(0, I) drawn from ``generator``.

    x: [B, C, *spatial] (2D or 3D). ``noise_std`` is a scalar or a per-voxel standard deviation
    broadcastable to x (LADP: σa inside the region of interest, σb elsewhere). Returns
    (x', W): W is the noise the network must predict; it is ε itself when noise_std = 1 (DDP).
    """
    eps = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    noise = eps * noise_std  # [B, C, *spatial]; exactly ε when noise_std = 1
    return math.sqrt(gamma) * x + math.sqrt(1.0 - gamma) * noise, noise


def freeze_encoder(backbone: nn.Module) -> int:
    """requires_grad = False for every backbone parameter named with one of ``backbone.encoder_prefixes``.

    Returns how many tensors were frozen; a backbone whose prefixes match nothing is an error
    (freezing nothing silently would pretrain the whole network instead of the decoder).
    """
    prefixes = tuple(backbone.encoder_prefixes)
    frozen = 0
    for name, param in backbone.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(False)
            frozen += 1
    if frozen == 0:
        raise ValueError(f"freeze_encoder: no parameter of {type(backbone).__name__} starts with its encoder_prefixes {prefixes}")
    return frozen


@register_method("ddp")
class DecoderDenoising(PretextTask):
    """DDP: predict ε from √γ·x + √(1−γ)·ε with an L2 loss, encoder optionally frozen (LADP II.C eq. 5-6, III.A)."""

    Config = DDPConfig
    default_backbone = "vgg_unet"  # TernausNet, LADP II.D; 2D slices (II.A)
    supported_backbones = ("vgg_unet", "unet2d")
    transfer = "all"  # the whole U-Net (decoder included) initialises fine-tuning; only the output layer is new
    paper = "label_aware_denoising"
    paper_recipe = LADP_PAPER_RECIPE

    def __init__(self, backbone: nn.Module, cfg: DDPConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        if cfg.freeze_encoder:
            freeze_encoder(backbone)  # the loop optimises only parameters with requires_grad
        # Per instance, since it depends on the config: with a frozen encoder part of the backbone gets no
        # gradient (those parameters have requires_grad False, which DistributedDataParallel ignores anyway).
        self.trains_whole_backbone = not cfg.freeze_encoder

    def noise_std(self, batch: dict[str, torch.Tensor], *, generator: torch.Generator) -> float | torch.Tensor:
        """Standard deviation of the noise W: 1 everywhere for DDP."""
        return 1.0

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, *spatial]
        std = self.noise_std(batch, generator=generator)  # drawn first (LADP draws its regions here), then ε
        noisy, noise = denoising_corruption(x, gamma=self.cfg.gamma, noise_std=std, generator=generator)
        return {"loss": F.mse_loss(self.backbone(noisy), noise)}  # eq. 6: ||g_φ(f_θ(x')) − W||², averaged over voxels
