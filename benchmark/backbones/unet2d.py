"""2D U-Net (Ronneberger et al. 2015) as MONAI BasicUNet: the SI paper's backbone (section 5.4)."""
from __future__ import annotations

import torch

from benchmark.backbones.base import Backbone, conv_like, kaiming_init
from benchmark.backbones.registry import BACKBONES, BackboneSize


@BACKBONES.register("unet2d")
class UNet2D(Backbone):
    """2D U-Net (Ronneberger et al. 2015) as MONAI BasicUNet; the SI paper's backbone (section 5.4)."""

    spatial_dims = 2
    encoder_prefixes = ("net.conv_0", "net.down_")
    input_prefixes = ("net.conv_0.conv_0.conv.",)
    output_prefixes = ("net.final_conv.",)

    def __init__(self, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet

        self.net = BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, features=size.unet_features)
        kaiming_init(self.net)
        self.bottleneck_channels = size.unet_features[4]  # down_4's output
        self.bottleneck_stride = 16  # four 2x max-pools

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, out, H, W]
        return self.net(x)

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, C, H, W] -> BasicUNet's five encoder maps at strides 1, 2, 4, 8, 16."""
        net = self.net
        feats = [net.conv_0(x)]
        for down in (net.down_1, net.down_2, net.down_3, net.down_4):
            feats.append(down(feats[-1]))
        return feats

    def bottleneck_tap(self):
        return self.net.down_4, lambda out: out

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        block = self.net.conv_0.conv_0
        block.conv = conv_like(block.conv, in_channels=channels, inflate=inflate)

    def replace_output(self, channels: int) -> None:
        self.net.final_conv = conv_like(self.net.final_conv, out_channels=channels)
