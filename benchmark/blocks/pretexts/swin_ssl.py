"""The Swin-UNETR self-supervised objective (Tang et al. 2022, "Self-Supervised Pre-Training of
Swin Transformers for 3D Medical Image Analysis", section 3.2), shared by three methods of the
DAE paper's Table 4 (section 3.3): ``swin_unetr_ssl`` (all three losses), ``rotation`` and
``contrastive`` (one loss each). They differ only in their Config's loss weights.

Pipeline (Tang et al. Fig. 1; MONAI research-contributions ``SwinUNETR/Pretrain/main.py``):
every crop x gives two views, each rotated by a random multiple of 90° (``random_rotations``)
and corrupted by random cut-out boxes (``cutout``, the reference's ``aug_rand``). The Swin
encoder encodes both views; light heads on its deepest features predict

* the rotation (4-way cross-entropy),
* a projection whose two views of a crop are positives for NT-Xent (``nt_xent``) over the
  GLOBAL batch (gathered across workers),
* the clean rotated view (inpainting, L1) through a small upsampling head.

Only the encoder is trained and transferred, as in Tang et al., whose heads sit on the encoder
and whose fine-tuning loads the encoder weights alone; the decoder is unused in pretraining
(``transfer = "encoder"``, ``trains_whole_backbone = False``). The heads read the backbone's
bottleneck (``Backbone.bottleneck``), so the objective runs on every backbone: on Swin-UNETR as in
the paper, on the series-token ViT, and on the 2D networks (rotations in the slice plane).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.blocks.groups import ALL_BACKBONES
from benchmark.blocks.heads import reconstruction_head
from benchmark.blocks.losses import global_nt_xent
from benchmark.blocks.pretext import PretextTask
from benchmark.blocks.recipes import DAE_BASELINE_SOURCE, DAE_PAPER_RECIPE
from benchmark.blocks.rotation import cutout, random_rotations


@dataclass(frozen=True)
class SwinSSLConfig:
    # Total loss λ1·inpainting + λ2·contrastive + λ3·rotation with every λ = 1 (Tang et al. 3.2;
    # the reference ``Loss``: alpha1 = alpha2 = alpha3 = 1.0).
    rotation_weight: float = 1.0
    contrastive_weight: float = 1.0
    reconstruction_weight: float = 1.0
    temperature: float = 0.5  # NT-Xent τ; the reference ``Contrast(temperature=0.5)``
    projection_dim: int = 512  # contrastive head: Linear(encoder dim, 512) in the reference
    # Cut-out (reference ``patch_rand_drop``): up to 30% of the voxels in boxes whose sides are
    # between 5% and 25% of the crop's.
    max_drop: float = 0.3
    max_block: float = 0.25
    min_block: float = 0.05

    def __post_init__(self) -> None:
        weights = (self.rotation_weight, self.contrastive_weight, self.reconstruction_weight)
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError(f"loss weights (rotation, contrastive, reconstruction) must be >= 0 with one > 0, got {weights}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {self.projection_dim}")
        if not 0.0 <= self.max_drop < 1.0:
            raise ValueError(f"max_drop (fraction of voxels cut out) must be in [0, 1), got {self.max_drop}")
        if not 0.0 < self.min_block <= self.max_block <= 1.0:
            raise ValueError(f"need 0 < min_block <= max_block <= 1, got {self.min_block}, {self.max_block}")


class SwinSSLPretext(PretextTask):
    """Rotation + contrastive + inpainting on the Swin encoder, each loss on when its weight > 0 (Tang et al. 3.2)."""

    Config = SwinSSLConfig
    default_backbone = "swin_unetr"
    supported_backbones = ALL_BACKBONES
    transfer = "encoder"  # Tang et al.: the Swin encoder is pretrained; heads and decoder are not transferred
    trains_whole_backbone = False  # the Swin-UNETR decoder gets no gradient (DDP: find_unused_parameters)
    paper = "disruptive_autoencoders"
    # The DAE paper gives one pretraining recipe (3.2) and runs every compared method on Swin-UNETR
    # (3.3); its baselines are trained like DAE here, not with Tang et al.'s own schedule.
    paper_recipe = dataclasses.replace(DAE_PAPER_RECIPE, source=DAE_BASELINE_SOURCE)

    def __init__(self, backbone: nn.Module, cfg: SwinSSLConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        dim = backbone.bottleneck_channels  # 16 x feature_size for Swin-UNETR's deepest stage
        # Heads only for the losses that are on, so every head parameter gets a gradient.
        self.rotation_head = nn.Linear(dim, 4) if cfg.rotation_weight > 0 else None
        self.contrastive_head = nn.Linear(dim, cfg.projection_dim) if cfg.contrastive_weight > 0 else None
        self.reconstruction_head = reconstruction_head(
            dim, in_channels, stride=backbone.bottleneck_stride, spatial_dims=backbone.spatial_dims,
            norm=getattr(backbone, "norm_kind", "instance"), groups=getattr(backbone, "norm_groups", 1)) if cfg.reconstruction_weight > 0 else None

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, X, Y(, Z)]
        b = x.shape[0]
        # Two views per crop, each rotated then cut out (reference main.py: rot_rand x2, aug_rand x2).
        (view1, rot1), (view2, rot2) = random_rotations(x, generator=generator), random_rotations(x, generator=generator)
        corrupted = torch.cat([cutout(view1, cfg=self.cfg, generator=generator), cutout(view2, cfg=self.cfg, generator=generator)])
        features = self.backbone.bottleneck(corrupted)  # [2B, F, *(spatial / stride)], one encoder pass for both views
        pooled = features.flatten(2).mean(dim=2)  # [2B, F]; the reference reads single tokens (0 and 1) instead

        out, loss = {}, features.new_zeros(())
        if self.rotation_head is not None:
            out["rotation"] = F.cross_entropy(self.rotation_head(pooled), torch.cat([rot1, rot2]))
            loss = loss + self.cfg.rotation_weight * out["rotation"]
        if self.contrastive_head is not None:
            z = self.contrastive_head(pooled)  # [2B, projection_dim]
            out["contrastive"] = global_nt_xent(z[:b], z[b:], temperature=self.cfg.temperature)
            loss = loss + self.cfg.contrastive_weight * out["contrastive"]
        if self.reconstruction_head is not None:
            # Target: the clean rotated views, every voxel (reference L1Loss on rec vs x1, x2).
            out["reconstruction"] = F.l1_loss(self.reconstruction_head(features), torch.cat([view1, view2]))
            loss = loss + self.cfg.reconstruction_weight * out["reconstruction"]
        return {"loss": loss, **{k: v.detach() for k, v in out.items()}}
