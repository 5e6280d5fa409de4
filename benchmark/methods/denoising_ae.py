"""Denoising autoencoder (Vincent et al. 2008): the "DAE [16]" baseline of LADP Table 1.

LADP section I: "The denoising pretraining objective, which has its roots in denoising auto-encoders [16],
typically trains deep learning segmentation models to predict the uncorrupted version of a noisy image." Its
Table 1 compares that plain denoising autoencoder (ref. [16], Vincent et al. 2008, not the Disruptive
Autoencoder of the DAE paper) with DDP and LADP on the same TernausNet. Vincent et al. (section 2.3) corrupt the
input x into x̃, map x̃ through the encoder-decoder and minimise the reconstruction error against the CLEAN x
(squared error for real-valued inputs, section 2.2): L = ‖g(f(x̃)) − x‖².

The corruption (``corruption``):

* ``"gaussian"`` (default): x̃ = √γ·x + √(1−γ)·ε, ε ~ N(0, I), γ = 0.95: the noise of the DDP and LADP rows it is
  compared with (LADP II.C eq. 5 with σa = σb = 1). LADP describes its DAE baseline only as predicting the
  uncorrupted version of a NOISY image, so the row differs from DDP in its target alone (x instead of ε), which is
  the comparison of Brempong et al.'s DDP paper (predicting the noise vs the image).
* ``"masking"``: Vincent et al.'s own masking noise, a fixed fraction ν of every sample's components set to 0
  (section 2.3; ``mask_fraction``, 25 %; the paper picks ν per data set among a few destruction levels).

The loss is the squared error over every component (Vincent et al. 2.2-2.3: the whole input is reconstructed, not
only the destroyed part). The whole network trains (the encoder is what a denoising autoencoder learns;
``freeze_encoder=True`` pretrains only the decoder, as LADP's grey DDP rows); the whole U-Net transfers, as DDP's.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch.nn.functional as F

from benchmark.blocks.groups import ALL_BACKBONES
from benchmark.blocks.masking_noise import masking_noise
from benchmark.blocks.noise import denoising_corruption
from benchmark.blocks.pretexts.denoising import freeze_encoder
from benchmark.blocks.recipes import LADP_PAPER_RECIPE
from benchmark.methods.base import PretextTask, register_method

CORRUPTIONS = ("gaussian", "masking")
_APPLIES = {"gamma": "gaussian", "mask_fraction": "masking"}  # field -> the corruption that reads it


@dataclass(frozen=True)
class DenoisingAEConfig:
    corruption: str = "gaussian"  # gaussian | masking (module docstring)
    gamma: float = 0.95  # γ of the Gaussian corruption: DDP's and LADP's (LADP II.C "we set γ = 0.95")
    mask_fraction: float = 0.25  # ν of the masking noise (Vincent et al. 2008, 2.3)
    freeze_encoder: bool = False  # Vincent et al. train encoder and decoder

    def __post_init__(self) -> None:
        if self.corruption not in CORRUPTIONS:
            raise ValueError(f"DenoisingAEConfig.corruption must be one of {list(CORRUPTIONS)}, got {self.corruption!r}")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"DenoisingAEConfig.gamma γ must be in (0, 1), got {self.gamma}")
        if not 0.0 < self.mask_fraction < 1.0:
            raise ValueError(f"DenoisingAEConfig.mask_fraction ν must be in (0, 1), got {self.mask_fraction}")
        defaults = {f.name: f.default for f in fields(self)}
        for name, corruption in _APPLIES.items():  # a setting the chosen corruption never reads is a mistake, not a no-op
            if self.corruption != corruption and getattr(self, name) != defaults[name]:
                raise ValueError(f"DenoisingAEConfig.{name}={getattr(self, name)} only applies to corruption={corruption!r}; "
                                 f"this configuration uses corruption={self.corruption!r}")


@register_method("denoising_ae")
class DenoisingAutoencoder(PretextTask):
    """Denoising autoencoder: corrupt x (Gaussian as DDP, or Vincent's masking noise), reconstruct the clean x, L2 (LADP Table 1 "DAE [16]")."""

    Config = DenoisingAEConfig
    default_backbone = "vgg_unet"  # TernausNet, the network of every LADP Table 1 row (II.D)
    supported_backbones = ALL_BACKBONES  # only the backbone's forward is used
    transfer = "all"  # the whole U-Net initialises fine-tuning, as DDP's; the output layer is replaced
    paper = "label_aware_denoising"
    pretrain_aug = "ladp"  # LADP II.D: flips in the self-pretraining of every row of Table 1, this baseline's too
    paper_recipe = LADP_PAPER_RECIPE  # LADP II.D: one recipe for pretraining its rows (Adam 1e-4, 30 epochs, batch 16)

    def __init__(self, backbone, cfg: DenoisingAEConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        if cfg.freeze_encoder:
            freeze_encoder(backbone)
        self.trains_whole_backbone = not cfg.freeze_encoder  # frozen encoder parameters get no gradient (DDP must know)

    def corrupt(self, x, *, generator):
        """x [B, C, *spatial] -> x̃, the corrupted input (module docstring)."""
        if self.cfg.corruption == "gaussian":
            return denoising_corruption(x, gamma=self.cfg.gamma, generator=generator)[0]
        return masking_noise(x, fraction=self.cfg.mask_fraction, generator=generator)[0]

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, *spatial]
        reconstruction = self.backbone(self.corrupt(x, generator=generator))  # backbone out channels = C
        return {"loss": F.mse_loss(reconstruction, x)}  # ‖g(f(x̃)) − x‖², averaged over components
