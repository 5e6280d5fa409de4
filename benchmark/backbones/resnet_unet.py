"""A 2D U-Net whose encoder is a timm ResNet (He et al. 2016): the CoPer paper's ResNet-50 (IV.A) in a U-Net."""
from __future__ import annotations

import torch
from torch import nn

from benchmark.backbones.base import Backbone, conv_like
from benchmark.backbones.registry import BACKBONES, BackboneSize


_RESNETS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101", 152: "resnet152"}


@BACKBONES.register("resnet_unet")
class ResNetUNet(Backbone):
    """2D U-Net whose encoder is a timm ResNet (He et al. 2016); the CoPer paper's ResNet-50 (IV.A) in a U-Net.

    The encoder is ``timm.create_model(resnet{depth}, features_only=True, pretrained=False)``:
    nothing is downloaded, the SSL objective trains it from scratch (CoPer III.A). It yields five
    maps at strides 2, 4, 8, 16, 32. The decoder is MONAI's ``UNetDecoder`` (the FlexibleUNet one,
    segmentation_models.pytorch style): four upsample + concatenate-skip + two-conv blocks back to
    stride 2 and one block without skip to full resolution, then a 3x3 output convolution.
    ``size.resnet_width`` scales the ResNet stage widths and the decoder widths; timm keeps its
    64-channel stem whatever the width. Crop sides must be multiples of 32 (as vgg_unet); SSL
    heads read ``encode(x)[-1]``, the stride-32 map (any view size: only the U-Net needs sides
    that are multiples of 32).
    """

    spatial_dims = 2
    encoder_prefixes = ("encoder.",)
    input_prefixes = ("encoder.conv1.",)
    output_prefixes = ("head.",)

    def __init__(self, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> None:
        super().__init__()
        import timm
        from monai.networks.nets.flexible_unet import UNetDecoder

        if len(roi) != 2 or any(r % 32 for r in roi):
            raise ValueError(f"resnet_unet needs a 2D crop whose sides are multiples of 32 (the ResNet downsamples 5 times), got roi {tuple(roi)}")
        if size.resnet_depth not in _RESNETS:
            raise ValueError(f"BackboneSize.resnet_depth must be one of {sorted(_RESNETS)}, got {size.resnet_depth}")
        if size.resnet_width <= 0:
            raise ValueError(f"BackboneSize.resnet_width must be > 0, got {size.resnet_width}")
        width = size.resnet_width
        stages = tuple(max(8, int(round(c * width))) for c in (64, 128, 256, 512))
        # zero_init_last=False: SwAV's ResNet leaves the last BN of each block at 1 (timm zeroes it), so the
        # first steps train every block, not only the BN scales that gate the residual branches.
        self.encoder = timm.create_model(
            _RESNETS[size.resnet_depth], pretrained=False, features_only=True, in_chans=in_channels, channels=stages, zero_init_last=False,
        )
        decoder = tuple(max(8, int(round(c * width))) for c in (256, 128, 64, 32, 16))  # FlexibleUNet's defaults at width 1
        self.decoder = UNetDecoder(
            spatial_dims=2, encoder_channels=(in_channels, *self.encoder.feature_info.channels()), decoder_channels=decoder,
            act=("relu", {"inplace": True}), norm="batch", dropout=0.0, bias=False, upsample="nontrainable",
            pre_conv="default", interp_mode="nearest", align_corners=None, is_pad=False,
        )
        self.head = nn.Conv2d(decoder[-1], out_channels, kernel_size=3, padding=1)
        self.bottleneck_channels = self.encoder.feature_info.channels()[-1]
        self.bottleneck_stride = 32

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, C, H, W] -> the encoder's five maps, strides 2, 4, 8, 16, 32."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, out, H, W]
        return self.head(self.decoder(self.encode(x), skip_connect=4))

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encode(x)

    def bottleneck_tap(self):
        return self.encoder, lambda out: out[-1]

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        self.encoder.conv1 = conv_like(self.encoder.conv1, in_channels=channels, inflate=inflate)

    def replace_output(self, channels: int) -> None:
        self.head = conv_like(self.head, out_channels=channels)
