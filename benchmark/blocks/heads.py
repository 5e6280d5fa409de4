"""Heads that methods put on a backbone: projection / prediction MLPs, an upsampling reconstruction
head, and the MAE-style masked-token decoder. A method owns its heads; they never transfer."""
from __future__ import annotations

import math

import torch
from torch import nn


def pooled(features: torch.Tensor) -> torch.Tensor:
    """Global average of a feature map [B, C, *grid] -> [B, C] (2D or 3D)."""
    return features.mean(dim=tuple(range(2, features.dim())))


def linear_projection(in_dim: int, out_dim: int) -> nn.Linear:
    """A linear embedding of pooled features (CLIP-style; DAE's CMCL head, Tang et al.'s rotation / contrastive heads)."""
    return nn.Linear(in_dim, out_dim)


def simsiam_projector(in_dim: int, dim: int) -> nn.Sequential:
    """SimSiam's projection MLP (section 4): 3 layers, BN on every layer, no ReLU after the last, the output BN
    without affine. No bias before a BN (it would get no gradient)."""
    return nn.Sequential(
        nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
        nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
        nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False),
    )


def simsiam_predictor(dim: int, hidden: int) -> nn.Sequential:
    """SimSiam's prediction MLP h: a 2-layer bottleneck (section 4)."""
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


def swav_projector(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """SwAV's head: Linear -> BN -> ReLU -> Linear. No bias before BN: it would get no gradient."""
    return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


def reconstruction_head(dim: int, out_channels: int, *, stride: int = 32, spatial_dims: int = 3, norm: str = "instance",
                        groups: int = 1) -> nn.Sequential:
    """Tang et al.'s SSLHead default ("vae") inpainting head, for a bottleneck at any power-of-two ``stride``.

    log2(stride) stages of (conv 3, instance norm, leaky ReLU, 2x linear upsampling) from the
    bottleneck features, widths dim/2, /4, /8, /16, /16, ... (halved up to four times), then a
    1x1 conv to the image channels. At stride 32 in 3D this is the reference head exactly (five
    stages). The convs before a norm have no bias (the norm removes it, so it would get no gradient). ``norm="group"``
    (``groups`` groups, at most one per channel) or ``"layer"`` (one group) instead, for a backbone built so
    (``BackboneSize.swin_norm``): the smoke crop's 32^3 gives a 1-voxel bottleneck, which instance norm cannot normalise.
    """
    stages = stride.bit_length() - 1
    if stride < 1 or 2**stages != stride:
        raise ValueError(f"reconstruction_head needs a power-of-two bottleneck stride, got {stride}")
    conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    instance = nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d
    if norm == "instance":
        make_norm = instance
    elif norm in ("group", "layer"):
        make_norm = lambda c: nn.GroupNorm(math.gcd(c, groups if norm == "group" else 1), c)  # noqa: E731
    else:
        raise ValueError(f"reconstruction_head norm {norm!r}; expected instance, group or layer")
    mode = "trilinear" if spatial_dims == 3 else "bilinear"
    widths = [dim] + [max(1, dim // 2 ** min(i + 1, 4)) for i in range(stages)]
    layers: list[nn.Module] = []
    for cin, cout in zip(widths[:-1], widths[1:]):
        layers += [
            conv(cin, cout, kernel_size=3, padding=1, bias=False),
            make_norm(cout),
            nn.LeakyReLU(),
            nn.Upsample(scale_factor=2, mode=mode, align_corners=False),
        ]
    layers.append(conv(widths[-1], out_channels, kernel_size=1))
    return nn.Sequential(*layers)


class MaskedTokenDecoder(nn.Module):
    """MAE-style light decoder (He et al. 2022), shared by CSM and MAE3D.

    Encoded visible tokens are projected, scattered back to their positions, hidden ones get a
    learned mask token; a position embedding (shared across series) and a series embedding are
    added, then timm ``Block``s and a linear head predict the voxels of every patch.
    """

    def __init__(self, *, enc_dim: int, num_patches: int, num_series: int, patch_voxels: int, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, num_patches, dim))
        self.series_embed = nn.Parameter(torch.zeros(1, num_series, 1, dim))
        for p in (self.mask_token, self.pos_embed, self.series_embed):
            nn.init.trunc_normal_(p, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, patch_voxels)

    @classmethod
    def for_encoder(cls, encoder: nn.Module, cfg, *, num_series: int) -> "MaskedTokenDecoder":
        """A decoder sized for a token encoder (``Backbone.token_encoder``) with the decoder_* fields of ``cfg``."""
        return cls(
            enc_dim=encoder.dim, num_patches=encoder.num_patches, num_series=num_series, patch_voxels=encoder.patch**3,
            dim=cfg.decoder_dim, depth=cfg.decoder_depth, heads=cfg.decoder_heads,
        )

    def forward(self, encoded: torch.Tensor, order: torch.Tensor, valid: torch.Tensor, *, num_series: int) -> torch.Tensor:
        """encoded [B, Lmax, enc_dim] packed as by ``gather_visible`` (order [B, L], valid [B, Lmax]) -> [B, S, N, P]."""
        b, length = order.shape
        n = length // num_series
        full = self.mask_token.expand(b, length, -1).clone()
        rows, cols = valid.nonzero(as_tuple=True)
        full[rows, order[rows, cols]] = self.embed(encoded)[rows, cols]
        full = (full.reshape(b, num_series, n, -1) + self.pos_embed + self.series_embed[:, :num_series]).reshape(b, length, -1)
        for block in self.blocks:
            full = block(full)
        return self.head(self.norm(full)).reshape(b, num_series, n, -1)


def encode_and_decode(encoder: nn.Module, decoder: MaskedTokenDecoder, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [B, S, D, H, W], mask [B, S, N] (True = hidden) -> prediction [B, S, N, patch³].

    ``encoder`` is a token encoder (``tokenize`` / ``encode``); it sees only the visible tokens
    (CSM eq. 1, MAE); padded slots are never attended to.
    """
    from benchmark.blocks.masking import gather_visible

    b, s = x.shape[:2]
    n, dim = encoder.num_patches, encoder.dim
    tokens = encoder.tokenize(x).reshape(b, s * n, dim)
    packed, order, valid = gather_visible(tokens, ~mask.reshape(b, s * n))
    encoded = encoder.encode(packed, attn_mask=valid[:, None, None, :])  # [B, Lmax, dim]
    return decoder(encoded, order, valid, num_series=s)


def token_encoder(backbone: nn.Module, method: str) -> nn.Module:
    """``backbone.token_encoder`` or an error naming the method and the backbone (MAE-style methods need one)."""
    encoder = getattr(backbone, "token_encoder", None)
    if encoder is None:
        raise ValueError(f"{method} encodes only the visible tokens and needs a backbone with a token encoder "
                         f"(the series-token ViT); {type(backbone).__name__} has none")
    return encoder
