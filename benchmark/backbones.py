"""Backbone names -> MONAI / timm networks, 2D and 3D, with swappable input and output layers.

Every backbone exposes the same small surface so methods and the fine-tuning loop can
treat them alike:

* ``spatial_dims``      2 (slice-wise) or 3 (volumetric);
* ``replace_input(c)``  / ``replace_output(c)``  swap the first / last layer for ``c`` channels
  (SI paper section 5.4: "the input layer is replaced ... the output layer is replaced");
* ``encoder_prefixes``  parameter-name prefixes of the encoder, for methods that transfer
  only the encoder (contrastive / MAE-style objectives).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.registry import Registry

BACKBONES: Registry[type] = Registry("backbone")


def list_backbones() -> list[str]:
    return BACKBONES.names()


@dataclass(frozen=True)
class BackboneSize:
    """Width knobs shared by all backbones; the profile picks one (narrow for smoke, paper for paper)."""

    unet_features: tuple[int, ...] = (32, 64, 128, 256, 512, 32)
    swin_feature_size: int = 48
    swin_window: int = 7
    vit_dim: int = 768
    vit_depth: int = 12
    vit_heads: int = 12
    vit_patch: int = 16
    # vgg_unet: multiplies VGG11's widths (64..512) and TernausNet's 32 decoder filters; 1.0 is the paper's network.
    vgg_width: float = 1.0
    # resnet_unet: timm ResNet depth (18 / 34 / 50 / 101 / 152) and a multiplier of its stage widths (64..512)
    # and of the decoder widths; depth 50 at width 1.0 is the CoPer paper's ResNet-50 (section IV.A).
    resnet_depth: int = 50
    resnet_width: float = 1.0


# Smoke: window 4 because 7 pads the tiny feature maps of a 64x64x32 crop (3x slower on CPU).
SMOKE_SIZE = BackboneSize(unet_features=(16, 32, 64, 128, 128, 16), swin_feature_size=12, swin_window=4, vit_dim=48, vit_depth=2, vit_heads=4, vit_patch=8, vgg_width=0.25,
                        resnet_depth=18, resnet_width=0.25)
PAPER_SIZE = BackboneSize()


def build_backbone(name: str, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> nn.Module:
    return BACKBONES.get(name)(in_channels=in_channels, out_channels=out_channels, size=size, roi=roi)


def _kaiming_init(module: nn.Module) -> None:
    """Kaiming initialisation of every convolution (SI paper 5.4, for the from-scratch network)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, a=0.01, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _conv_like(old: nn.Module, *, in_channels: int | None = None, out_channels: int | None = None, inflate: bool = False) -> nn.Module:
    """A fresh conv with ``old``'s geometry but new channel counts (weights re-initialised).

    ``inflate``: ``old`` reads ONE channel (pretrained on single-modality volumes, as DAE does)
    and the new conv reads ``in_channels``: each input channel gets a copy of the pretrained
    kernel divided by the channel count, so a constant multi-channel input gives the same
    response as the single channel did (I3D-style inflation) instead of a random layer.
    """
    new = type(old)(
        in_channels if in_channels is not None else old.in_channels,
        out_channels if out_channels is not None else old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    _kaiming_init(new)
    if inflate:
        if old.in_channels != 1 or in_channels is None or out_channels is not None:
            raise ValueError("inflate only widens a one-channel input convolution")
        with torch.no_grad():
            new.weight.copy_(old.weight.repeat(1, in_channels, *([1] * (old.weight.dim() - 2))) / in_channels)
            if old.bias is not None:
                new.bias.copy_(old.bias)
    return new


@BACKBONES.register("unet2d")
class UNet2D(nn.Module):
    """2D U-Net (Ronneberger et al. 2015) as MONAI BasicUNet; the SI paper's backbone (section 5.4)."""

    spatial_dims = 2
    encoder_prefixes = ("net.conv_0", "net.down_")

    def __init__(self, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet

        self.net = BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, features=size.unet_features)
        _kaiming_init(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, out, H, W]
        return self.net(x)

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        block = self.net.conv_0.conv_0
        block.conv = _conv_like(block.conv, in_channels=channels, inflate=inflate)

    def replace_output(self, channels: int) -> None:
        self.net.final_conv = _conv_like(self.net.final_conv, out_channels=channels)


@BACKBONES.register("swin_unetr")
class SwinUNETR3D(nn.Module):
    """Swin-UNETR (Tang et al. 2022) from MONAI; the DAE paper's backbone (section 2)."""

    spatial_dims = 3
    encoder_prefixes = ("net.swinViT",)

    def __init__(self, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> None:
        super().__init__()
        from monai.networks.nets import SwinUNETR

        self.net = SwinUNETR(
            in_channels=in_channels,
            out_channels=out_channels,
            feature_size=size.swin_feature_size,
            window_size=size.swin_window,
            spatial_dims=3,
        )
        self.bottleneck_channels = 16 * size.swin_feature_size  # channels of the deepest encoder stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, D, H, W] -> [B, out, D, H, W]
        return self.net(x)

    @property
    def patch_embed(self) -> nn.Module:
        """The tokeniser whose output [B, C, D', H', W'] is what DAE's local masking disrupts."""
        return self.net.swinViT.patch_embed

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Deepest encoder features [B, 16*feature_size, ...] (for contrastive heads)."""
        return self.net.swinViT(x, self.net.normalize)[-1]

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        # The tokeniser's projection and the first skip block both read the raw input.
        embed = self.net.swinViT.patch_embed
        embed.proj = _conv_like(embed.proj, in_channels=channels, inflate=inflate)
        enc = self.net.encoder1.layer
        enc.conv1.conv = _conv_like(enc.conv1.conv, in_channels=channels, inflate=inflate)
        if hasattr(enc, "conv3"):
            enc.conv3.conv = _conv_like(enc.conv3.conv, in_channels=channels, inflate=inflate)

    def replace_output(self, channels: int) -> None:
        self.net.out.conv.conv = _conv_like(self.net.out.conv.conv, out_channels=channels)


class SeriesViTEncoder(nn.Module):
    """ViT over per-series 3D patches: every series of a multi-series scan is tokenised separately.

    Tokens carry a learned position embedding (shared across series) plus a learned series
    embedding, so the encoder can relate the same location across series (CSM paper III.B).
    Transformer blocks are timm's ``Block``. ``visible`` / ``attn_mask`` let MAE-style methods
    encode only unmasked tokens.
    """

    def __init__(self, *, num_series: int, roi: tuple[int, int, int], size: BackboneSize) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        p = size.vit_patch
        if any(r % p for r in roi):
            raise ValueError(f"ViT patch size {p} must divide the crop size {roi}")
        self.patch = p
        self.grid = tuple(r // p for r in roi)
        self.num_series = num_series
        self.num_patches = self.grid[0] * self.grid[1] * self.grid[2]
        self.dim = size.vit_dim
        self.patch_embed = nn.Conv3d(1, size.vit_dim, kernel_size=p, stride=p)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, self.num_patches, size.vit_dim))
        self.series_embed = nn.Parameter(torch.zeros(1, num_series, 1, size.vit_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.series_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(size.vit_dim, size.vit_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(size.vit_depth))
        self.norm = nn.LayerNorm(size.vit_dim)

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, D, H, W] -> tokens [B, S, N, dim] with position and series embeddings added."""
        b, s = x.shape[:2]
        t = self.patch_embed(x.reshape(b * s, 1, *x.shape[2:]))  # [B*S, dim, d, h, w]
        t = t.flatten(2).transpose(1, 2).reshape(b, s, self.num_patches, self.dim)
        return t + self.pos_embed + self.series_embed[:, :s]

    def encode(self, tokens: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, L, dim] -> [B, L, dim]; attn_mask [B, 1, L, L] bool (True = may attend)."""
        for block in self.blocks:
            tokens = block(tokens, attn_mask=attn_mask)
        return self.norm(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, D, H, W] -> features [B, S, N, dim] (no masking)."""
        t = self.tokenize(x)
        b, s = t.shape[:2]
        return self.encode(t.reshape(b, s * self.num_patches, self.dim)).reshape(b, s, self.num_patches, self.dim)


@BACKBONES.register("vit")
class ViTSegmenter(nn.Module):
    """Series-token ViT encoder + light UNETR-style convolutional decoder (CSM paper's ViT backbone).

    Series features at each location are averaged, so a scan with a series zero-filled still
    yields a feature map; the decoder upsamples the token grid back to voxels with MONAI blocks.
    """

    spatial_dims = 3
    encoder_prefixes = ("encoder.",)

    def __init__(self, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> None:
        super().__init__()
        from monai.networks.blocks import UnetOutBlock, UnetResBlock

        self.encoder = SeriesViTEncoder(num_series=in_channels, roi=tuple(roi), size=size)
        steps = int(round(torch.log2(torch.tensor(float(size.vit_patch))).item()))
        widths = [max(size.vit_dim // 2 ** (i + 1), 8) for i in range(steps)]
        ups, res, prev = [], [], size.vit_dim
        for w in widths:
            ups.append(nn.ConvTranspose3d(prev, w, kernel_size=2, stride=2))
            res.append(UnetResBlock(3, w, w, kernel_size=3, stride=1, norm_name="instance"))
            prev = w
        self.ups, self.res = nn.ModuleList(ups), nn.ModuleList(res)
        self.skip = UnetResBlock(3, in_channels, prev, kernel_size=3, stride=1, norm_name="instance")
        self.fuse = UnetResBlock(3, 2 * prev, prev, kernel_size=3, stride=1, norm_name="instance")
        self.out = UnetOutBlock(3, prev, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, S, D, H, W] -> [B, out, D, H, W]
        feats = self.encoder(x).mean(dim=1)  # [B, N, dim], averaged over series
        b = feats.shape[0]
        y = feats.transpose(1, 2).reshape(b, self.encoder.dim, *self.encoder.grid)
        for up, res in zip(self.ups, self.res):
            y = res(up(y))
        return self.out(self.fuse(torch.cat([y, self.skip(x)], dim=1)))

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        # Tokenisation is per series (``inflate`` has nothing to widen: patches are embedded one series at a time), so only the series embedding and the skip block depend on it.
        from monai.networks.blocks import UnetResBlock

        enc = self.encoder
        old = enc.series_embed.data
        new = torch.zeros(1, channels, 1, enc.dim)
        nn.init.trunc_normal_(new, std=0.02)
        new[:, : min(channels, old.shape[1])] = old[:, : min(channels, old.shape[1])]
        enc.series_embed, enc.num_series = nn.Parameter(new), channels
        self.skip = UnetResBlock(3, channels, self.skip.conv1.conv.out_channels, kernel_size=3, stride=1, norm_name="instance")

    def replace_output(self, channels: int) -> None:
        self.out.conv.conv = _conv_like(self.out.conv.conv, out_channels=channels)


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
class VGGUNet(nn.Module):
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
    encoder_prefixes = ("encoder.",)

    def __init__(self, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> None:
        super().__init__()
        from timm.models import build_model_with_cfg
        from timm.models.vgg import VGG, cfgs

        if len(roi) != 2 or any(r % 32 for r in roi):
            raise ValueError(f"vgg_unet needs a 2D crop whose sides are multiples of 32 (VGG11 pools 5 times), got roi {tuple(roi)}")
        if size.vgg_width <= 0:
            raise ValueError(f"BackboneSize.vgg_width must be > 0, got {size.vgg_width}")
        width = size.vgg_width
        layers = [v if v == "M" else max(8, int(round(v * width))) for v in cfgs["vgg11"]]
        # What timm.create_model("vgg11", pretrained=False, features_only=True) builds, with the widths
        # scaled. mlp_ratio only shrinks the classifier MLP that features_only discards anyway
        # (VGG allocates a 100M-parameter 7x7 conv head before it is cut off).
        self.encoder = build_model_with_cfg(
            VGG, "vgg11", False, model_cfg=layers, feature_cfg=dict(flatten_sequential=True, out_indices=(0, 1, 2, 3, 4, 5)),
            features_only=True, in_chans=in_channels, mlp_ratio=1 / 4096,
        )
        e1, e2, e3, e4, e5, _pooled = self.encoder.feature_info.channels()  # 64, 128, 256, 512, 512, 512 at width 1
        nf = max(4, int(round(32 * width)))  # TernausNet num_filters
        self.center = _UpBlock(e5, nf * 16, nf * 8)
        self.dec5 = _UpBlock(nf * 8 + e5, nf * 16, nf * 8)
        self.dec4 = _UpBlock(nf * 8 + e4, nf * 16, nf * 4)
        self.dec3 = _UpBlock(nf * 4 + e3, nf * 8, nf * 2)
        self.dec2 = _UpBlock(nf * 2 + e2, nf * 4, nf)
        self.dec1 = _ConvReLU(nf + e1, nf)
        self.final = nn.Conv2d(nf, out_channels, kernel_size=1)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, out, H, W]
        conv1, conv2, conv3, conv4, conv5, pooled = self.encoder(x)  # strides 1, 2, 4, 8, 16, 32
        y = self.center(pooled)  # stride 16
        y = self.dec5(torch.cat([y, conv5], dim=1))  # stride 8
        y = self.dec4(torch.cat([y, conv4], dim=1))  # stride 4
        y = self.dec3(torch.cat([y, conv3], dim=1))  # stride 2
        y = self.dec2(torch.cat([y, conv2], dim=1))  # stride 1
        return self.final(self.dec1(torch.cat([y, conv1], dim=1)))

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        self.encoder.features_0 = _conv_like(self.encoder.features_0, in_channels=channels, inflate=inflate)

    def replace_output(self, channels: int) -> None:
        self.final = _conv_like(self.final, out_channels=channels)


_RESNETS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101", 152: "resnet152"}


@BACKBONES.register("resnet_unet")
class ResNetUNet(nn.Module):
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

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, C, H, W] -> the encoder's five maps, strides 2, 4, 8, 16, 32."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, out, H, W]
        return self.head(self.decoder(self.encode(x), skip_connect=4))

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        self.encoder.conv1 = _conv_like(self.encoder.conv1, in_channels=channels, inflate=inflate)

    def replace_output(self, channels: int) -> None:
        self.head = _conv_like(self.head, out_channels=channels)
