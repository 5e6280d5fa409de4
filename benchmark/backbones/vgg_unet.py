"""TernausNet (Iglovikov & Shvets 2018): U-Nets whose encoder is a VGG without BatchNorm.

* ``vgg_unet``: UNet11, the VGG11 encoder: the LADP paper's network (II.D: "TernausNet", its ref. [8] is
  "U-Net with VGG11 encoder");
* ``vgg16_unet``: UNet16, the VGG-16 encoder: the CoPer paper's "VGG" (Table II's random / supervised rows are
  VGG-16, as LPIPS's; its perceptual features are VGG-16's relu1_2 ... relu5_3, the maps before each max-pool).
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.backbones.base import Backbone, conv_like, kaiming_init
from benchmark.backbones.registry import BACKBONES, BackboneSize


class _ConvReLU(nn.Sequential):
    """3x3 convolution + ReLU (TernausNet's ``ConvRelu``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True))


class _UpBlock(nn.Sequential):
    """TernausNet ``DecoderBlock``: ConvReLU, then a stride-2 transposed convolution + ReLU (doubles H, W)."""

    def __init__(self, in_channels: int, middle_channels: int, out_channels: int) -> None:
        super().__init__(
            _ConvReLU(in_channels, middle_channels),
            nn.ConvTranspose2d(middle_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
        )


@BACKBONES.register("vgg_unet")
class VGGUNet(Backbone):
    """TernausNet (Iglovikov & Shvets 2018): U-Net whose encoder is VGG11; the LADP paper's network (II.D).

    The encoder is timm's ``vgg11`` with ``features_only`` and no weights (nothing is downloaded:
    the LADP paper self-pretrains, sections I and II.D). It yields the five ReLU maps before each
    max-pool (64, 128, 256, 512, 512 channels at strides 1, 2, 4, 8, 16) and the last pool
    (stride 32). The decoder is TernausNet's UNet11 with num_filters = 32: a centre block and four
    up-blocks (ConvReLU + stride-2 transposed conv) with skip connections, a ConvReLU at full
    resolution and a 1x1 output convolution. ``size.vgg_width`` scales every width (1.0: the
    paper's network). Input sides must be multiples of 32 (a 64x64 crop gives a 2x2 centre).
    """

    spatial_dims = 2
    vgg = "vgg11"  # timm's VGG configuration of the encoder
    dec4_filters = 4  # UNet11's fourth decoder block gives 4 x num_filters channels (UNet16's: 8)
    encoder_prefixes = ("encoder.",)
    input_prefixes = ("encoder.features_0.",)
    output_prefixes = ("final.",)

    def __init__(self, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> None:
        super().__init__()
        from timm.models import build_model_with_cfg
        from timm.models.vgg import VGG, cfgs

        if len(roi) != 2 or any(r % 32 for r in roi):
            raise ValueError(f"{self.vgg}'s U-Net needs a 2D crop whose sides are multiples of 32 (the VGG pools 5 times), got roi {tuple(roi)}")
        if size.vgg_width <= 0:
            raise ValueError(f"BackboneSize.vgg_width must be > 0, got {size.vgg_width}")
        width = size.vgg_width
        layers = [v if v == "M" else max(8, int(round(v * width))) for v in cfgs[self.vgg]]
        # What timm.create_model(self.vgg, pretrained=False, features_only=True) builds, with the widths
        # scaled. mlp_ratio only shrinks the classifier MLP that features_only discards anyway
        # (VGG allocates a 100M-parameter 7x7 conv head before it is cut off).
        self.encoder = build_model_with_cfg(
            VGG, self.vgg, False, model_cfg=layers, feature_cfg=dict(flatten_sequential=True, out_indices=(0, 1, 2, 3, 4, 5)),
            features_only=True, in_chans=in_channels, mlp_ratio=1 / 4096,
        )
        e1, e2, e3, e4, e5, _pooled = self.encoder.feature_info.channels()  # 64, 128, 256, 512, 512, 512 at width 1
        nf = max(4, int(round(32 * width)))  # TernausNet num_filters
        self.center = _UpBlock(e5, nf * 16, nf * 8)
        self.dec5 = _UpBlock(nf * 8 + e5, nf * 16, nf * 8)
        dec4 = nf * self.dec4_filters
        self.dec4 = _UpBlock(nf * 8 + e4, nf * 16, dec4)
        self.dec3 = _UpBlock(dec4 + e3, nf * 8, nf * 2)
        self.dec2 = _UpBlock(nf * 2 + e2, nf * 4, nf)
        self.dec1 = _ConvReLU(nf + e1, nf)
        self.final = nn.Conv2d(nf, out_channels, kernel_size=1)
        kaiming_init(self)
        self.bottleneck_channels = _pooled  # the last max-pool of VGG11 (stride 32)
        self.bottleneck_stride = 32

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU maps before each max-pool (strides 1, 2, 4, 8, 16) and the last pool (stride 32)."""
        return list(self.encoder(x))

    def bottleneck_tap(self):
        return self.encoder, lambda out: out[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, out, H, W]
        conv1, conv2, conv3, conv4, conv5, pooled = self.encoder(x)  # strides 1, 2, 4, 8, 16, 32
        y = self.center(pooled)  # stride 16
        y = self.dec5(torch.cat([y, conv5], dim=1))  # stride 8
        y = self.dec4(torch.cat([y, conv4], dim=1))  # stride 4
        y = self.dec3(torch.cat([y, conv3], dim=1))  # stride 2
        y = self.dec2(torch.cat([y, conv2], dim=1))  # stride 1
        return self.final(self.dec1(torch.cat([y, conv1], dim=1)))

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        self.encoder.features_0 = conv_like(self.encoder.features_0, in_channels=channels, inflate=inflate)

    def replace_output(self, channels: int) -> None:
        self.final = conv_like(self.final, out_channels=channels)


@BACKBONES.register("vgg16_unet")
class VGG16UNet(VGGUNet):
    """TernausNet's UNet16: the U-Net above on a VGG-16 encoder (timm ``vgg16``, no BatchNorm, no weights): the CoPer
    paper's "VGG" (Table II lists VGG-16; LPIPS's VGG is VGG-16). Its five ReLU maps before each max-pool are VGG-16's
    relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 (64, 128, 256, 512, 512 channels at strides 1..16), the layers
    LPIPS and the CoPer metric read. Decoder: UNet16's widths (its fourth block gives 8 x num_filters channels);
    ``size.vgg_width`` scales every width as for ``vgg_unet``."""

    vgg = "vgg16"
    dec4_filters = 8
