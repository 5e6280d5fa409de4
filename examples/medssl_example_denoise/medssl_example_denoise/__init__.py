"""A denoising autoencoder (Vincent et al. 2008) as a medssl-bench method that lives outside the suite's repository.

pip install -e examples/medssl_example_denoise; python run_benchmark.py --methods denoise_ae --tasks brats
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.methods.base import PretextTask, Recipe


@dataclass(frozen=True)
class DenoiseConfig:
    sigma: float = 0.3  # std of the Gaussian noise added to the (z-scored) image

    def __post_init__(self):
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")


class DenoisingAutoencoder(PretextTask):
    """Denoising autoencoder: reconstruct the image from a copy with Gaussian noise, MSE (Vincent et al. 2008)."""

    Config = DenoiseConfig
    default_backbone = "unet2d"
    supported_backbones = ("unet2d", "vgg_unet", "vgg16_unet", "resnet_unet", "swin_unetr", "vit", "unetr")
    paper_recipe = Recipe(steps=2000, batch_size=8, lr=1e-3, optimizer="adamw", source="this example's choice: no paper recipe")

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, *spatial]
        noise = torch.randn(x.shape, generator=generator).to(x)  # the corruption: draws from the run's generator only
        return {"loss": F.mse_loss(self.backbone(x + self.cfg.sigma * noise), x)}  # the target: the clean image
