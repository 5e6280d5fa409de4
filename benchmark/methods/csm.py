"""Cross-series masking (Li et al., "Cross-Series Masking", section III.B).

Every series of a multi-series scan is patchified separately. Intra-series masking hides a
ratio (87.5%) of the patches of each series with an independent random mask per series;
inter-series masking hides k ∈ [1, s−1] whole series. A ViT encoder sees only the visible
patches (eq. 1), a light decoder reconstructs every token, and the loss is the MSE on the
masked patches and masked series (eq. 2).

The ablations of section IV.C (tables VII/VIII) are configuration, not classes:
``same_position_masks`` (random patch-mask ×), ``series_masking=False`` (series-mask ×),
``reconstruct_masked_series=False`` (series-mask ○) and ``mask_ratio=0.5``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.methods.base import PretextTask, Recipe, register_method


@dataclass(frozen=True)
class CSMConfig:
    mask_ratio: float = 0.875  # intra-series patch mask ratio (section III.B / IV)
    # The paper does not give the decoder size; an MAE-style light decoder (He et al. 2022).
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    # Ablations of section IV.C (tables VII / VIII); the defaults are the full method (row 1).
    same_position_masks: bool = False  # "random patch-mask ×": one patch mask shared by every series
    series_masking: bool = True  # False: "series-mask ×", no whole series hidden (k = 0)
    reconstruct_masked_series: bool = True  # False: "series-mask ○", hidden series are not in the loss

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not self.series_masking and not self.reconstruct_masked_series:
            raise ValueError(
                "CSMConfig: reconstruct_masked_series=False only has a meaning with series_masking=True "
                "(no series is masked when series_masking=False); set reconstruct_masked_series=True"
            )


def cross_series_masks(
    batch: int,
    num_series: int,
    num_patches: int,
    *,
    ratio: float,
    generator: torch.Generator,
    same_position_masks: bool = False,
    series_masking: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for one batch. Returns (mask [B, S, N] bool, True = hidden; masked_series [B, S] bool).

    Intra-series: exactly round(ratio·N) patches of every series, drawn independently per series
    (``same_position_masks``: one draw per sample shared by all its series, ablation IV.C).
    Inter-series: k ~ U{1, ..., S−1} whole series per sample, fully hidden
    (``series_masking=False``: k = 0, ablation IV.C; then a single series is allowed).
    """
    if series_masking and num_series < 2:
        raise ValueError(f"cross-series masking needs at least 2 series, got {num_series}")
    if num_series < 1:
        raise ValueError(f"need at least 1 series, got {num_series}")
    k_patches = int(round(ratio * num_patches))
    if not 0 < k_patches < num_patches:
        raise ValueError(f"mask ratio {ratio} leaves no masked or no visible patch among {num_patches}")
    # The default path draws from the generator exactly as before (same seed -> same masks).
    scores = torch.rand(batch, 1 if same_position_masks else num_series, num_patches, generator=generator)
    mask = (scores.argsort(dim=2).argsort(dim=2) < k_patches).expand(batch, num_series, num_patches)
    if not series_masking:
        return mask.contiguous(), torch.zeros(batch, num_series, dtype=torch.bool)
    k_series = torch.randint(1, num_series, (batch, 1), generator=generator)  # k in [1, S-1]
    series_rank = torch.rand(batch, num_series, generator=generator).argsort(dim=1).argsort(dim=1)
    masked_series = series_rank < k_series
    return mask | masked_series.unsqueeze(-1), masked_series


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """x [B, S, D, H, W] -> [B, S, N, patch³] in the same token order as the ViT's Conv3d tokeniser."""
    b, s, d, h, w = x.shape
    x = x.reshape(b, s, d // patch, patch, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 2, 4, 6, 3, 5, 7)
    return x.reshape(b, s, (d // patch) * (h // patch) * (w // patch), patch**3)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 2: mean squared error over the hidden tokens only. prediction/target [..., P], mask [...] bool."""
    per_token = (prediction - target).pow(2).mean(dim=-1)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


def gather_visible(tokens: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack the visible tokens of each sample to the front of a padded batch.

    tokens [B, L, dim], visible [B, L] bool -> (packed [B, Lmax, dim], order [B, L] (the permutation
    used), valid [B, Lmax] bool). Samples differ in visible count because k varies per sample.
    """
    order = torch.argsort((~visible).to(torch.int8), dim=1, stable=True)  # visible first, original order kept
    counts = visible.sum(dim=1)
    lmax = int(counts.max())
    packed = torch.gather(tokens, 1, order[:, :lmax, None].expand(-1, -1, tokens.shape[-1]))
    valid = torch.arange(lmax, device=tokens.device)[None] < counts[:, None]
    return packed, order, valid


class MaskedTokenDecoder(nn.Module):
    """MAE-style light decoder (He et al. 2022) shared by CSM and MAE3D.

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
        """A decoder sized for ``encoder`` (a SeriesViTEncoder) with the decoder_* fields of ``cfg``."""
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

    The encoder sees only the visible tokens (eq. 1); padded slots are never attended to.
    """
    b, s = x.shape[:2]
    n, dim = encoder.num_patches, encoder.dim
    tokens = encoder.tokenize(x).reshape(b, s * n, dim)
    packed, order, valid = gather_visible(tokens, ~mask.reshape(b, s * n))
    encoded = encoder.encode(packed, attn_mask=valid[:, None, None, :])  # [B, Lmax, dim]
    return decoder(encoded, order, valid, num_series=s)


@register_method("csm")
class CrossSeriesMasking(PretextTask):
    """CSM: intra- + inter-series masking, MAE-style ViT encoder/decoder, masked MSE (CSM paper III.B)."""

    Config = CSMConfig
    default_backbone = "vit"
    supported_backbones = ("vit",)
    transfer = "encoder"  # section III.C: the pre-trained encoder is fine-tuned with a task head
    trains_whole_backbone = False  # the segmentation decoder of the backbone is unused while pretraining
    paper = "cross_series_masking"
    paper_recipe = Recipe(
        steps=None,
        epochs=8000,
        batch_size=6,
        lr=1e-3,
        optimizer="adam",
        schedule="cosine",
        source="CSM paper IV.A: Adam, cosine decay from 1e-3, 8000 epochs (BT-MSD), 96^3 crops; batch 6 as stated for training",
    )

    def __init__(self, backbone, cfg: CSMConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        self.decoder = MaskedTokenDecoder.for_encoder(backbone.encoder, cfg, num_series=in_channels)

    @classmethod
    def unsupported_reason(cls, *, task, backbone):
        if len(task.channels) < 2:
            return f"cross-series masking needs >= 2 series; task {task.name!r} has {len(task.channels)} ({', '.join(task.channels)})"
        return super().unsupported_reason(task=task, backbone=backbone)

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, S, D, H, W], one channel per series
        enc = self.backbone.encoder
        b, s = x.shape[:2]
        cfg = self.cfg
        mask, masked_series = cross_series_masks(
            b, s, enc.num_patches, ratio=cfg.mask_ratio, generator=generator,
            same_position_masks=cfg.same_position_masks, series_masking=cfg.series_masking,
        )
        mask, masked_series = mask.to(x.device), masked_series.to(x.device)  # [B, S, N], [B, S]
        prediction = encode_and_decode(enc, self.decoder, x, mask)  # [B, S, N, patch³]
        # Eq. 2 covers masked patches and masked series; ablation "series-mask ○" drops the latter.
        loss_mask = mask if cfg.reconstruct_masked_series else mask & ~masked_series[..., None]
        return {"loss": masked_mse(prediction, patchify(x, enc.patch), loss_mask)}
