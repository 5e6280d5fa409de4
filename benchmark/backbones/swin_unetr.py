"""Swin-UNETR (Tang et al. 2022) from MONAI: the DAE paper's backbone (section 2)."""
from __future__ import annotations

import torch
from torch import nn

from benchmark.backbones.base import Backbone, conv_like
from benchmark.backbones.registry import BACKBONES, BackboneSize


SWIN_NORMS = ("instance", "group", "layer")


def _norm_groups(size: BackboneSize) -> int:
    return {"group": size.swin_feature_size, "layer": 1}.get(size.swin_norm, 0)


def _norm_name(size: BackboneSize):
    """MONAI's ``norm_name`` for ``BackboneSize.swin_norm`` (the widths 12..192 x feature_size/12 all divide by feature_size)."""
    if size.swin_norm not in SWIN_NORMS:
        raise ValueError(f"swin_norm {size.swin_norm!r}; expected one of {SWIN_NORMS}")
    return ("group", {"num_groups": _norm_groups(size)}) if size.swin_norm != "instance" else "instance"


@BACKBONES.register("swin_unetr")
class SwinUNETR3D(Backbone):
    """Swin-UNETR (Tang et al. 2022) from MONAI; the DAE paper's backbone (section 2)."""

    spatial_dims = 3
    encoder_prefixes = ("net.swinViT",)
    # The tokeniser's projection and the first skip block both read the raw input.
    input_prefixes = ("net.swinViT.patch_embed.proj.", "net.encoder1.layer.conv1.conv.", "net.encoder1.layer.conv3.conv.")
    output_prefixes = ("net.out.conv.conv.",)
    # MONAI's Swin-UNETR self-supervised weights (model_swinvit.pt of Project-MONAI/research-contributions SwinUNETR/
    # Pretrain) name the blocks' MLP layers fc1 / fc2 where MONAI's SwinUNETR has linear1 / linear2 (SwinUNETR.load_from
    # copies "module.layers1.0.blocks.0.mlp.fc1.weight" into "...mlp.linear1.weight"); some releases name the encoder swin_vit.
    checkpoint_renames = (("mlp.fc1.", "mlp.linear1."), ("mlp.fc2.", "mlp.linear2."), ("swin_vit.", "swinViT."))

    def __init__(self, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> None:
        super().__init__()
        from monai.networks.nets import SwinUNETR

        self.net = SwinUNETR(
            in_channels=in_channels,
            out_channels=out_channels,
            feature_size=size.swin_feature_size,
            window_size=size.swin_window,
            spatial_dims=3,
            norm_name=_norm_name(size),
        )
        self.bottleneck_channels = 16 * size.swin_feature_size  # channels of the deepest encoder stage
        self.bottleneck_stride = 32  # patch embedding 2x, then four 2x patch mergings
        # heads on the bottleneck normalise alike (benchmark.blocks.heads.reconstruction_head)
        self.norm_kind, self.norm_groups = size.swin_norm, _norm_groups(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, D, H, W] -> [B, out, D, H, W]
        return self.net(x)

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The Swin encoder's five maps (strides 2, 4, 8, 16, 32; widths feature_size x 1, 2, 4, 8, 16)."""
        return list(self.net.swinViT(x, self.net.normalize))

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Deepest encoder features [B, 16*feature_size, ...] (for contrastive heads)."""
        return self.net.swinViT(x, self.net.normalize)[-1]

    def bottleneck_tap(self):
        return self.net.swinViT, lambda out: out[-1]

    @property
    def patch_embed(self) -> nn.Module:
        """The tokeniser whose output [B, C, D', H', W'] is what DAE's local masking disrupts."""
        return self.net.swinViT.patch_embed

    @property
    def patch_size(self) -> tuple[int, ...]:
        return tuple(self.net.swinViT.patch_embed.patch_size)

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        embed = self.net.swinViT.patch_embed
        embed.proj = conv_like(embed.proj, in_channels=channels, inflate=inflate)
        enc = self.net.encoder1.layer
        enc.conv1.conv = conv_like(enc.conv1.conv, in_channels=channels, inflate=inflate)
        if hasattr(enc, "conv3"):
            enc.conv3.conv = conv_like(enc.conv3.conv, in_channels=channels, inflate=inflate)

    def replace_output(self, channels: int) -> None:
        self.net.out.conv.conv = conv_like(self.net.out.conv.conv, out_channels=channels)
