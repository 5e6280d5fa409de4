"""UNETR (Hatamizadeh et al. 2022) from MONAI, its ViT tokenising every series separately (CSM paper III.B).

The CSM paper (Tables I-II, "Unetr [6]") and the DAE paper (Table 2, "UNETR") list UNETR apart from the plain ViT:
a ViT-B/16 encoder whose hidden states after blocks 3, 6, 9 and 12 feed a convolutional decoder with a skip
connection at every resolution (Hatamizadeh et al. section 3.1). This backbone is MONAI's
``monai.networks.nets.UNETR``: its ViT (``monai.networks.nets.ViT``: 16³ patches, 12 blocks), its
encoder1-4 / decoder2-5 blocks and output block, and its forward, with one change for multi-series inputs:

* The UNETR paper stacks the modalities as channels of one patch token. The CSM paper's ViT-B/16 (the backbone of
  all its SSL rows, section IV.A) tokenises every series separately with one shared patch embedding and adds a
  series embedding (III.B), which is what cross-series masking needs. Here the ViT is built for one input channel
  and applied to every series, a learned series embedding is added, the tokens of all series are encoded together,
  and each hidden state is averaged over the series before the decoder (as the ``vit`` backbone does), so every
  ViT-based method of the CSM paper (csm, mae3d, dino) and the scratch row run on the same network. With one series
  (BTCV, FeTA, the DAE paper's UNETR) this is MONAI's UNETR exactly, plus one learned constant added to every token.
* The first skip block (``encoder1``), which reads the raw voxels at full resolution, reads all series as channels.

Width: ``BackboneSize.vit_dim`` / ``vit_heads`` (MLP 4 x dim, as ViT-B's 3072 for 768) and ``unetr_feature_size``
(16: MONAI's and the UNETR paper's default). MONAI's UNETR fixes 12 blocks and 16³ patches (the decoder's four
2x upsamplings and the taps after blocks 3, 6, 9 assume them), so ``vit_depth`` and ``vit_patch`` do not apply to it.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.backbones.base import Backbone, conv_like
from benchmark.backbones.registry import BACKBONES, BackboneSize
from benchmark.blocks.tokens import grid_position_embedding, resized_series_embedding

PATCH = 16  # monai.networks.nets.UNETR: patch_size = ensure_tuple_rep(16, spatial_dims)
TAPS = (3, 6, 9)  # hidden states after blocks 4, 7, 10 (0-based 3, 6, 9) feed encoder2-4 (UNETR section 3.1)


class SeriesTokenViT(nn.Module):
    """MONAI's ViT applied to every series of a scan: the token encoder of the UNETR backbone.

    ``vit`` is ``monai.networks.nets.ViT`` with one input channel: its patch embedding (Conv3d(1, dim, 16, 16))
    tokenises each series, its learned position embedding is shared by the series and a learned series embedding
    tells them apart (CSM III.B). ``tokenize`` / ``encode`` let MAE-style methods encode a subset of the tokens
    (the ``Backbone.token_encoder`` protocol of the series-token ViT: ``num_patches``, ``dim``, ``patch``).
    """

    def __init__(self, vit: nn.Module, *, num_series: int, grid: tuple[int, int, int], dim: int) -> None:
        super().__init__()
        self.vit = vit
        self.patch = PATCH
        self.grid = tuple(grid)
        self.num_patches = grid[0] * grid[1] * grid[2]
        self.dim = dim
        self.num_series = num_series
        self.series_embed = nn.Parameter(torch.zeros(1, num_series, 1, dim))
        nn.init.trunc_normal_(self.series_embed, std=0.02)

    @property
    def patch_embed(self) -> nn.Module:
        """The Conv3d(1, dim, 16, 16) applied to every series: output [B*S, dim, *grid]."""
        return self.vit.patch_embedding.patch_embeddings

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, D, H, W] -> tokens [B, S, N, dim]: patch, position (interpolated for another grid) and series embeddings."""
        b, s = x.shape[:2]
        embedding = self.vit.patch_embedding
        t = self.patch_embed(x.reshape(b * s, 1, *x.shape[2:]))  # [B*S, dim, d, h, w]
        grid = tuple(t.shape[2:])
        t = t.flatten(2).transpose(1, 2) + grid_position_embedding(embedding.position_embeddings, grid=self.grid, to=grid)
        t = embedding.dropout(t)  # as MONAI's PatchEmbeddingBlock (rate 0: identity)
        return t.reshape(b, s, -1, self.dim) + self.series_embed[:, :s]

    def blocks(self, tokens: torch.Tensor, attn_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """tokens [B, L, dim] -> the output of every transformer block (MONAI's ``hidden_states_out``), un-normalised."""
        key_mask = None
        if attn_mask is not None:  # [B, 1, 1, L] (the token-encoder protocol) -> MONAI's key mask [B, L]
            if attn_mask.dim() == 4 and attn_mask.shape[1:3] == (1, 1):
                key_mask = attn_mask[:, 0, 0]
            elif attn_mask.dim() == 2:
                key_mask = attn_mask
            else:
                raise ValueError(f"SeriesTokenViT: attn_mask must mask keys ([B, L] or [B, 1, 1, L]), got shape {tuple(attn_mask.shape)}")
        out = []
        for block in self.vit.blocks:
            tokens = block(tokens, attn_mask=key_mask)
            out.append(tokens)
        return out

    def encode(self, tokens: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, L, dim] -> [B, L, dim] after every block and the final norm; attn_mask [B, 1, 1, L] bool (True = may attend)."""
        return self.vit.norm(self.blocks(tokens, attn_mask)[-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x [B, S, D, H, W] -> (normed last state, hidden states after blocks 3, 6, 9), each [B, N, dim] averaged over series."""
        t = self.tokenize(x)
        b, s = t.shape[:2]
        states = self.blocks(t.reshape(b, s * self.num_patches, self.dim))
        per_series = lambda z: z.reshape(b, s, self.num_patches, self.dim).mean(dim=1)  # noqa: E731
        return per_series(self.vit.norm(states[-1])), [per_series(states[i]) for i in TAPS]


@BACKBONES.register("unetr")
class UNETR3D(Backbone):
    """UNETR (Hatamizadeh et al. 2022) from MONAI, series tokenised separately (CSM III.B); CSM Tables I-II, DAE Table 2."""

    spatial_dims = 3
    encoder_prefixes = ("encoder.",)  # the ViT: what encoder-only methods (csm, mae3d, dino) transfer
    # Patches are embedded one series at a time: only the series embedding and the full-resolution skip block read
    # the number of input series.
    input_prefixes = ("encoder.series_embed", "net.encoder1.")
    output_prefixes = ("net.out.conv.conv.",)

    def __init__(self, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> None:
        super().__init__()
        from monai.networks.blocks import UnetrBasicBlock
        from monai.networks.nets import UNETR

        roi = tuple(roi)
        if len(roi) != 3 or any(r % PATCH for r in roi):
            raise ValueError(f"UNETR needs a 3D crop that its {PATCH}^3 patches divide, got {roi}")
        self.net = UNETR(
            in_channels=1, out_channels=out_channels, img_size=roi, feature_size=size.unetr_feature_size,
            hidden_size=size.vit_dim, mlp_dim=4 * size.vit_dim, num_heads=size.vit_heads, proj_type="conv", norm_name="instance",
            res_block=True,
        )
        # The ViT becomes the series-token encoder (registered once, under ``encoder``); encoder1 reads every series.
        vit = self.net.vit
        del self.net.vit
        self.encoder = SeriesTokenViT(vit, num_series=in_channels, grid=self.net.feat_size, dim=size.vit_dim)
        self.net.encoder1 = UnetrBasicBlock(spatial_dims=3, in_channels=in_channels, out_channels=size.unetr_feature_size,
                                            kernel_size=3, stride=1, norm_name="instance", res_block=True)
        self.bottleneck_channels = size.vit_dim
        self.bottleneck_stride = PATCH

    def token_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """Series-averaged tokens [B, N, dim] -> feature map [B, dim, *grid] (MONAI's ``proj_feat``)."""
        return self.net.proj_feat(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, S, D, H, W] -> [B, out, D, H, W]; MONAI UNETR.forward
        last, (x2, x3, x4) = self.encoder(x)
        net = self.net
        enc1 = net.encoder1(x)
        enc2 = net.encoder2(net.proj_feat(x2))
        enc3 = net.encoder3(net.proj_feat(x3))
        enc4 = net.encoder4(net.proj_feat(x4))
        dec3 = net.decoder5(net.proj_feat(last), enc4)
        dec2 = net.decoder4(dec3, enc3)
        dec1 = net.decoder3(dec2, enc2)
        return net.out(net.decoder2(dec1, enc1))

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ViT's maps after blocks 3, 6, 9 and 12 (normed), each [B, dim, *grid] at stride 16, shallow to deep."""
        last, hidden = self.encoder(x)
        return [self.token_map(h) for h in hidden] + [self.token_map(last)]

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        return self.token_map(self.encoder(x)[0])

    def bottleneck_tap(self):
        return self.encoder, lambda out: self.token_map(out[0])

    @property
    def patch_embed(self) -> nn.Module:
        """Conv3d(1, dim, 16, 16) applied to every series: output [B*S, dim, *grid]."""
        return self.encoder.patch_embed

    @property
    def patch_size(self) -> tuple[int, ...]:
        return (PATCH,) * 3

    @property
    def token_encoder(self) -> nn.Module:
        return self.encoder

    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        """New series count: the series embedding and encoder1 change, the per-series patch embedding is kept.
        ``inflate`` (pretrained on one series, DAE): every series gets the pretrained series embedding and encoder1's
        one-channel convs are inflated; otherwise the first min(old, new) series embeddings are kept, the rest and
        encoder1 are new."""
        from monai.networks.blocks import UnetrBasicBlock

        enc = self.encoder
        new = resized_series_embedding(enc.series_embed.data, channels, inflate=inflate, network="UNETR")
        enc.series_embed, enc.num_series = nn.Parameter(new), channels
        block = self.net.encoder1.layer  # UnetResBlock: conv1 reads the input, conv3 is the 1x1 residual projection
        if inflate and hasattr(block, "conv3"):  # conv3 exists when the input width differs from feature_size
            block.conv1.conv = conv_like(block.conv1.conv, in_channels=channels, inflate=True)
            block.conv3.conv = conv_like(block.conv3.conv, in_channels=channels, inflate=True)
        else:
            width = block.conv1.conv.out_channels
            self.net.encoder1 = UnetrBasicBlock(spatial_dims=3, in_channels=channels, out_channels=width, kernel_size=3, stride=1,
                                                norm_name="instance", res_block=True)

    def replace_output(self, channels: int) -> None:
        self.net.out.conv.conv = conv_like(self.net.out.conv.conv, out_channels=channels)
