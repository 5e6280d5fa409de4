"""Series-token ViT (CSM paper III.B): every series of a multi-series scan is tokenised separately."""
from __future__ import annotations

import torch
from torch import nn

from benchmark.backbones.base import Backbone, conv_like
from benchmark.backbones.registry import BACKBONES, BackboneSize
from benchmark.blocks.tokens import grid_position_embedding, resized_series_embedding


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
        """x [B, S, D, H, W] -> tokens [B, S, N, dim] with position and series embeddings added (a crop of another
        multiple of the patch gets the position embedding interpolated to its grid: ``grid_position_embedding``)."""
        b, s = x.shape[:2]
        t = self.patch_embed(x.reshape(b * s, 1, *x.shape[2:]))  # [B*S, dim, d, h, w]
        grid = tuple(t.shape[2:])  # self.grid for the crop the network was built for; DINO's local crops are smaller
        t = t.flatten(2).transpose(1, 2).reshape(b, s, -1, self.dim)
        return t + grid_position_embedding(self.pos_embed, grid=self.grid, to=grid) + self.series_embed[:, :s]

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
class ViTSegmenter(Backbone):
    """Series-token ViT encoder + light UNETR-style convolutional decoder (CSM paper's ViT backbone).

    Series features at each location are averaged, so a scan with a series zero-filled still
    yields a feature map; the decoder upsamples the token grid back to voxels with MONAI blocks.
    """

    spatial_dims = 3
    encoder_prefixes = ("encoder.",)
    # Patches are embedded one series at a time (Conv3d(1, dim)): only the series embedding and the
    # decoder's skip block read the number of input series.
    input_prefixes = ("encoder.series_embed", "skip.")
    output_prefixes = ("out.conv.conv.",)

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
        self.bottleneck_channels = size.vit_dim
        self.bottleneck_stride = size.vit_patch

    def token_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encoder tokens [B, S, N, dim] -> feature map [B, dim, *grid], series averaged (a zero-filled series still gives a map)."""
        feats = tokens.mean(dim=1)  # [B, N, dim]
        return feats.transpose(1, 2).reshape(feats.shape[0], self.encoder.dim, *self.encoder.grid)

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One scale: the token map [B, dim, *grid] at stride patch."""
        return [self.bottleneck(x)]

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        return self.token_map(self.encoder(x))

    def bottleneck_tap(self):
        return self.encoder, self.token_map

    @property
    def patch_embed(self) -> nn.Module:
        """Conv3d(1, dim) applied to every series: output [B*S, dim, *grid]."""
        return self.encoder.patch_embed

    @property
    def patch_size(self) -> tuple[int, ...]:
        return (self.encoder.patch,) * 3

    @property
    def token_encoder(self) -> nn.Module:
        return self.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, S, D, H, W] -> [B, out, D, H, W]
        feats = self.encoder(x).mean(dim=1)  # [B, N, dim], averaged over series
        b = feats.shape[0]
        y = feats.transpose(1, 2).reshape(b, self.encoder.dim, *self.encoder.grid)
        for up, res in zip(self.ups, self.res):
            y = res(up(y))
        return self.out(self.fuse(torch.cat([y, self.skip(x)], dim=1)))

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        """New series count. Tokenisation is per series, so the patch embedding is kept; the series
        embedding and the skip block change. ``inflate`` (pretrained on one series, DAE): every series
        gets the pretrained series embedding and the skip block's one-channel convs are inflated;
        otherwise the first min(old, new) series embeddings are kept, the rest and the skip block are new."""
        from monai.networks.blocks import UnetResBlock

        enc = self.encoder
        new = resized_series_embedding(enc.series_embed.data, channels, inflate=inflate, network="ViT")
        enc.series_embed, enc.num_series = nn.Parameter(new), channels
        skip = self.skip
        if inflate and hasattr(skip, "conv3"):
            skip.conv1.conv = conv_like(skip.conv1.conv, in_channels=channels, inflate=True)
            skip.conv3.conv = conv_like(skip.conv3.conv, in_channels=channels, inflate=True)
        else:
            self.skip = UnetResBlock(3, channels, skip.conv1.conv.out_channels, kernel_size=3, stride=1, norm_name="instance")

    def replace_output(self, channels: int) -> None:
        self.out.conv.conv = conv_like(self.out.conv.conv, out_channels=channels)
