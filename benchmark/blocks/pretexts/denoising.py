"""Decoder denoising pretraining (DDP, Brempong et al. 2022) as the LADP paper sets it up (section II.C):
the shared pretext of ``ddp`` and ``ladp``.

The input is noised with x' = √γ·x + √(1−γ)·W and the network predicts W with an L2 loss (LADP
eq. 5-6); ``noise_std`` gives W's standard deviation (1 for DDP, σa / σb around the lesion for
LADP). As in DDP, the encoder f_θ can be frozen so that only the decoder g_φ is pretrained; the
LADP paper finds that best (section III.A). Only the backbone's forward and its encoder prefixes
are used, so every backbone runs it.

What LADP and DDP see besides the noise (cases, crop sampling) is configuration, so that the two can
be compared with only the noise different: see ``benchmark.methods.ddp`` (``cases``) and
``LABEL_AWARE_FOREGROUND_PROB`` below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.blocks.groups import ALL_BACKBONES
from benchmark.blocks.noise import denoising_corruption
from benchmark.blocks.pretext import PretextTask, Recipe
from benchmark.blocks.recipes import LADP_PAPER_RECIPE


@dataclass(frozen=True)
class DenoisingConfig:
    gamma: float = 0.95  # γ, LADP II.C: "Similar to DDP we set γ = 0.95"
    # LADP III.A: "Similar to DDP, freezing the encoder parameters (θ in Eq. 6) during the
    # pre-training phase provides the best results." DDP freezes an ImageNet-pretrained encoder; LADP
    # self-pretrains without ImageNet (section I), so a frozen encoder keeps its random initialisation.
    freeze_encoder: bool = True
    # Share of pretraining crops centred on a lesion voxel (``benchmark.data.random_crop``); > 0 reads labels, so
    # only a pretraining on the labelled cases of a fraction may set it (LADP, ``ddp:cases=labelled``).
    foreground_prob: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma γ must be in (0, 1) (signal fraction of x' = √γ·x + √(1−γ)·ε), got {self.gamma}")
        if not 0.0 <= self.foreground_prob <= 1.0:
            raise ValueError(f"foreground_prob must be a share of crops in [0, 1], got {self.foreground_prob}")


# Lesion oversampling of label-aware denoising pretraining crops: a third of the crops centred on a lesion voxel.
# Not from the LADP paper, which pretrains on whole 256² slices, every slice once per epoch (II.A-B; the authors'
# data.py ``DenosingDataset`` iterates over all slices), but nnU-Net's foreground oversampling
# (Isensee et al. 2021, ``oversample_foreground_percent = 0.33``), the same as this benchmark's fine-tuning crops
# (``Protocol.finetune_foreground_prob``): with crops smaller than a slice (smoke profile, 3D backbones) most
# uniform crops would miss the small HIE lesions around which LADP's noise differs from DDP's.
LABEL_AWARE_FOREGROUND_PROB = 0.33


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


class DenoisingPretext(PretextTask):
    """Predict W from √γ·x + √(1−γ)·W with an L2 loss, encoder optionally frozen (LADP II.C eq. 5-6, III.A)."""

    Config: ClassVar[type] = DenoisingConfig
    default_backbone: ClassVar[str] = "vgg_unet"  # TernausNet, LADP II.D; 2D slices (II.A)
    supported_backbones: ClassVar[tuple[str, ...]] = ALL_BACKBONES
    transfer: ClassVar[str] = "all"  # the whole U-Net (decoder included) initialises fine-tuning; only the output layer is new
    paper: ClassVar[str] = "label_aware_denoising"
    # LADP II.D: "During the self-pretraining and fine-tuning phases ... images are randomly flipped horizontally and
    # vertically" (image and label together for LADP, which reads the label).
    pretrain_aug: ClassVar[str] = "ladp"
    paper_recipe: ClassVar[Recipe] = LADP_PAPER_RECIPE

    def __init__(self, backbone: nn.Module, cfg: DenoisingConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        if cfg.freeze_encoder:
            freeze_encoder(backbone)  # the loop optimises only parameters with requires_grad
        # Per instance, since it depends on the config: with a frozen encoder part of the backbone gets no
        # gradient (those parameters have requires_grad False, which DistributedDataParallel ignores anyway).
        self.trains_whole_backbone = not cfg.freeze_encoder

    @classmethod
    def pretrain_foreground_prob(cls, cfg: DenoisingConfig) -> float:
        return cfg.foreground_prob if cls.is_label_aware(cfg) else 0.0

    def noise_std(self, batch: dict[str, torch.Tensor], *, generator: torch.Generator) -> float | torch.Tensor:
        """Standard deviation of the noise W: 1 everywhere for DDP."""
        return 1.0

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, *spatial]
        std = self.noise_std(batch, generator=generator)  # drawn first (LADP draws its regions here), then ε
        noisy, noise = denoising_corruption(x, gamma=self.cfg.gamma, noise_std=std, generator=generator)
        return {"loss": F.mse_loss(self.backbone(noisy), noise)}  # eq. 6: ||g_φ(f_θ(x')) − W||², averaged over voxels
