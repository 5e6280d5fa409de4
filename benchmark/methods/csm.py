"""Cross-series masking (Li et al., "Cross-Series Masking", section III.B).

Every series of a multi-series scan is patchified separately. Intra-series masking hides a
ratio (87.5%) of the patches of each series with an independent random mask per series;
inter-series masking hides k ∈ [1, s−1] whole series. A ViT encoder sees only the visible
patches (eq. 1), a light decoder reconstructs every token, and the loss is the MSE on the
masked patches and masked series (eq. 2).
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

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")


def cross_series_masks(
    batch: int, num_series: int, num_patches: int, *, ratio: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for one batch. Returns (mask [B, S, N] bool, True = hidden; masked_series [B, S] bool).

    Intra-series: exactly round(ratio·N) patches of every series, drawn independently per series.
    Inter-series: k ~ U{1, ..., S−1} whole series per sample, fully hidden.
    """
    if num_series < 2:
        raise ValueError(f"cross-series masking needs at least 2 series, got {num_series}")
    k_patches = int(round(ratio * num_patches))
    if not 0 < k_patches < num_patches:
        raise ValueError(f"mask ratio {ratio} leaves no masked or no visible patch among {num_patches}")
    scores = torch.rand(batch, num_series, num_patches, generator=generator)
    mask = scores.argsort(dim=2).argsort(dim=2) < k_patches
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
        from timm.models.vision_transformer import Block

        enc = backbone.encoder
        self.embed = nn.Linear(enc.dim, cfg.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, enc.num_patches, cfg.decoder_dim))
        self.series_embed = nn.Parameter(torch.zeros(1, in_channels, 1, cfg.decoder_dim))
        for p in (self.mask_token, self.pos_embed, self.series_embed):
            nn.init.trunc_normal_(p, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg.decoder_dim, cfg.decoder_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(cfg.decoder_depth))
        self.norm = nn.LayerNorm(cfg.decoder_dim)
        self.head = nn.Linear(cfg.decoder_dim, enc.patch**3)

    @classmethod
    def unsupported_reason(cls, *, task, backbone):
        if len(task.channels) < 2:
            return f"cross-series masking needs >= 2 series; task {task.name!r} has {len(task.channels)} ({', '.join(task.channels)})"
        return super().unsupported_reason(task=task, backbone=backbone)

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, S, D, H, W], one channel per series
        enc = self.backbone.encoder
        b, s = x.shape[:2]
        n, dim = enc.num_patches, enc.dim
        mask, _ = cross_series_masks(b, s, n, ratio=self.cfg.mask_ratio, generator=generator)
        mask = mask.to(x.device)

        tokens = enc.tokenize(x).reshape(b, s * n, dim)
        packed, order, valid = gather_visible(tokens, ~mask.reshape(b, s * n))
        attend = valid[:, None, None, :]  # padded keys are never attended to
        encoded = enc.encode(packed, attn_mask=attend)  # [B, Lmax, dim]

        # Scatter encoded visible tokens back to their positions; hidden ones get the mask token.
        full = self.mask_token.expand(b, s * n, -1).clone()
        rows, cols = valid.nonzero(as_tuple=True)
        full[rows, order[rows, cols]] = self.embed(encoded)[rows, cols]
        full = (full.reshape(b, s, n, -1) + self.pos_embed + self.series_embed[:, :s]).reshape(b, s * n, -1)
        for block in self.blocks:
            full = block(full)
        prediction = self.head(self.norm(full)).reshape(b, s, n, -1)
        return {"loss": masked_mse(prediction, patchify(x, enc.patch), mask)}
