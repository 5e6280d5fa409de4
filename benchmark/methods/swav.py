"""SwAV (Caron et al. 2020) as the CoPer paper pretrains its ResNet / VGG on 2D MR slices (III.A, appendix B).

Every view's embedding is projected to the unit sphere and scored against K normalised
prototypes. Codes are computed with no gradient by Sinkhorn-Knopp on the global crops only
(SwAV section 3.1 "Online clustering"), and every other view predicts them through a softmax at
temperature τ: the swapped prediction loss (SwAV eq. 1-2) summed over views as in section 3.2
("Multi-crop": codes from the full-resolution crops only).

Data parallel: Sinkhorn's sums run over the whole global batch (``all_reduce_sum``), so a
worker's codes are exactly its rows of the codes one worker would compute for the global
batch, and the per-sample losses are gathered (``gather_with_grad``) so every worker returns
the mean over all W·b samples: the loss one worker computes with batch W·b. Each worker's
gradient is then W times its share, which DistributedDataParallel's average divides back out
(tests/test_contrastive.py). The backbone's and the projection head's BatchNorm still
normalise per worker (SwAV's code uses SyncBatchNorm; torch's needs a GPU, so converting is
the runner's job, not the method's).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.blocks.groups import BACKBONES_2D, BACKBONES_3D, unsupported
from benchmark.blocks.heads import pooled, swav_projector
from benchmark.blocks.losses import swav_loss
from benchmark.blocks.multicrop import MultiCropConfig, check_view_sizes, multi_crop
from benchmark.methods.base import PretextTask, Recipe, register_method


@dataclass(frozen=True)
class SwAVConfig(MultiCropConfig):
    """Multi-crop fields (``MultiCropConfig``: CoPer appendix B) plus SwAV's clustering (SwAV code defaults)."""

    temperature: float = 0.1  # τ
    epsilon: float = 0.05  # ε, entropy regularisation of Sinkhorn's transport
    sinkhorn_iterations: int = 3
    n_prototypes: int = 3000  # K
    projection_hidden_dim: int = 2048
    projection_dim: int = 128
    # CoPer appendix B: "331 iterations are performed to obtain the prototypes", read as SwAV's
    # freeze_prototypes_niters (313 in SwAV's code: the first ImageNet epoch at batch 4096), i.e. the
    # prototypes get no gradient during the first epoch's iterations. Given in epochs here, because the
    # epoch length is the data set's: ``configure_schedule`` converts with the run's steps per epoch
    # (CoPer's 331 when its epoch has 331 iterations). The method alone cannot know the epoch length;
    # until configure_schedule is called nothing is frozen. A recipe counted in steps (the smoke
    # profile) has no epoch: nothing is frozen there either.
    freeze_prototypes_epochs: float = 1.0
    freeze_prototypes_steps: int | None = None  # an explicit count in iterations; overrides the epochs

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0 or self.epsilon <= 0:
            raise ValueError(f"temperature and epsilon must be > 0, got {self.temperature}, {self.epsilon}")
        if self.sinkhorn_iterations < 1:
            raise ValueError(f"sinkhorn_iterations must be >= 1 (the last one makes each code sum to one), got {self.sinkhorn_iterations}")
        if self.n_prototypes < 2 or self.projection_dim < 1 or self.projection_hidden_dim < 1:
            raise ValueError(f"need n_prototypes >= 2 and positive projection dims, got {self.n_prototypes}, "
                             f"{self.projection_hidden_dim}, {self.projection_dim}")
        if self.n_global_crops + self.n_local_crops < 2:
            raise ValueError("SwAV swaps predictions between views: n_global_crops + n_local_crops must be >= 2")
        if self.freeze_prototypes_epochs < 0 or (self.freeze_prototypes_steps is not None and self.freeze_prototypes_steps < 0):
            raise ValueError(f"freeze_prototypes_epochs / _steps must be >= 0, got {self.freeze_prototypes_epochs}, "
                             f"{self.freeze_prototypes_steps}")


def embed_by_resolution(backbone: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """[V x [b, C, s, s]] -> [V*b, D] pooled bottlenecks; views of one size go through the encoder together (SwAV's code)."""
    out, start = [], 0
    while start < len(views):
        end = start
        while end < len(views) and views[end].shape == views[start].shape:
            end += 1
        out.append(pooled(backbone.bottleneck(torch.cat(views[start:end]))))
        start = end
    return torch.cat(out)


@register_method("swav")
class SwAV(PretextTask):
    """SwAV: multi-crop, Sinkhorn codes on global crops, swapped prediction (SwAV eq. 1-2, 3.1-3.2; CoPer III.A, app. B)."""

    Config = SwAVConfig
    default_backbone = "resnet_unet"  # CoPer: ResNet-50 (section IV.A) and VGG
    supported_backbones = BACKBONES_2D  # any 2D encoder: the heads read its pooled bottleneck
    unsupported_backbones = unsupported(
        BACKBONES_3D, "multi-crop views are random resized crops of 2D slices (SwAV 3.2, CoPer appendix B); "
                      "a 3D backbone needs volumes")
    transfer = "encoder"
    trains_whole_backbone = False  # the U-Net decoder is unused while pretraining
    paper = "coper_perceptual_metric"
    paper_recipe = Recipe(
        steps=None,
        epochs=400,
        batch_size=96,
        lr=0.6,
        final_lr=0.0006,
        optimizer="lars",
        weight_decay=1e-6,
        momentum=0.9,
        schedule="cosine",
        warmup_epochs=5,
        source=(
            "CoPer appendix B: SGD, cosine from base lr 0.6 to final lr 0.0006, 5 warm-up epochs, 400 epochs, batch 96, "
            "192/96 multi-crops, prototypes frozen for the first 331 iterations. The optimizer is SwAV's (whose training "
            "strategy CoPer adopts): SGD wrapped in LARC, here timm's Lars (trust coefficient 0.001, no clipping). Not "
            "stated in CoPer: weight decay (SwAV code default 1e-6), momentum (0.9)"
        ),
    )

    def __init__(self, backbone: nn.Module, cfg: SwAVConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        # SwAV's head on the backbone's pooled bottleneck.
        self.projector = swav_projector(backbone.bottleneck_channels, cfg.projection_hidden_dim, cfg.projection_dim)
        self.prototypes = nn.Linear(cfg.projection_dim, cfg.n_prototypes, bias=False)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # training steps seen, for the prototype freeze
        # Steps with frozen prototypes: the explicit count, else 0 until configure_schedule converts the epochs.
        self.freeze_steps = cfg.freeze_prototypes_steps or 0

    def configure_schedule(self, *, recipe: Recipe, steps: int) -> None:
        """Prototype freeze in steps = freeze_prototypes_epochs x the run's steps per epoch (none without epochs)."""
        if self.cfg.freeze_prototypes_steps is not None:
            self.freeze_steps = self.cfg.freeze_prototypes_steps
            return
        per_epoch = recipe.steps_per_epoch(steps)
        self.freeze_steps = 0 if per_epoch is None else int(round(self.cfg.freeze_prototypes_epochs * per_epoch))

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, H, W]
        cfg = self.cfg
        stride = self.backbone.bottleneck_stride
        views = multi_crop(x, cfg, generator=generator, minimum=stride)  # globals [B, C, g, g] first, then locals [B, C, l, l]
        check_view_sizes(views, minimum=stride)
        z = F.normalize(self.projector(embed_by_resolution(self.backbone, views)), dim=1)  # [V*B, d]
        # SwAV's code renormalises the prototype weights in place each step; normalising in the graph
        # gives the same scores (cosines) without mutating a parameter inside forward.
        prototypes = F.normalize(self.prototypes.weight, dim=1)  # [K, d]
        if self.freeze_steps and int(self.step) < self.freeze_steps:
            prototypes = prototypes.detach()
        if self.training and torch.is_grad_enabled():
            self.step += 1
        scores = (z @ prototypes.t()).reshape(len(views), x.shape[0], -1)  # [V, B, K]
        loss = swav_loss(scores, n_assign=cfg.n_global_crops, temperature=cfg.temperature, epsilon=cfg.epsilon,
                         iterations=cfg.sinkhorn_iterations)
        return {"loss": loss}
