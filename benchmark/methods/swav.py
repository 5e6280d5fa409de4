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

from benchmark.methods.base import PretextTask, Recipe, register_method
from benchmark.methods.distributed import all_reduce_sum, gather_no_grad, gather_with_grad, world_size
from benchmark.methods.multicrop import MultiCropConfig, check_view_sizes, encoder_embedding, encoder_width, multi_crop


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
    # freeze_prototypes_niters (313 in SwAV's code). Default 0 (never frozen) so the first steps train
    # every head parameter, as the registry contract checks; set 331 to follow the appendix.
    freeze_prototypes_steps: int = 0

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
        if self.freeze_prototypes_steps < 0:
            raise ValueError(f"freeze_prototypes_steps must be >= 0, got {self.freeze_prototypes_steps}")


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, *, epsilon: float, iterations: int) -> torch.Tensor:
    """SwAV section 3.1 (Sinkhorn-Knopp): scores [b, K] -> codes Q [b, K], each row sums to one.

    Q = diag(u) exp(C^T Z / ε) diag(v) with equal total mass per prototype (1/K) and per sample
    (1/N) over the N samples of ALL workers; rows are rescaled by N at the end. Runs in float64
    after subtracting the global maximum score (the same on every worker, so it cancels).
    """
    s = scores.detach().double()
    top = gather_no_grad(s.max().reshape(1)).max()
    q = torch.exp((s - top) / epsilon).t()  # [K, b]
    k, n = q.shape[0], q.shape[1] * world_size()
    q = q / all_reduce_sum(q.sum())
    for _ in range(iterations):
        q = q / (all_reduce_sum(q.sum(dim=1, keepdim=True)) * k)  # every prototype gets 1/K of the mass
        q = q / (q.sum(dim=0, keepdim=True) * n)  # every sample 1/N
    return (q * n).t().to(scores.dtype)


def swav_loss(scores: torch.Tensor, *, n_assign: int, temperature: float, epsilon: float, iterations: int) -> torch.Tensor:
    """Swapped prediction with multi-crop (SwAV eq. 1-2, section 3.2). scores [V, b, K]: V views of b samples vs K prototypes.

    The first ``n_assign`` views (global crops) get codes; every other view predicts each code with
    softmax(scores / τ). Mean over predicting views and coded views, then over the samples of
    every worker (module docstring).
    """
    v = scores.shape[0]
    log_p = F.log_softmax(scores / temperature, dim=2)  # [V, b, K]
    per_sample = scores.new_zeros(scores.shape[1])  # [b]
    for i in range(n_assign):
        q = sinkhorn(scores[i], epsilon=epsilon, iterations=iterations)  # [b, K], no gradient
        others = [j for j in range(v) if j != i]
        per_sample = per_sample - (q[None] * log_p[others]).sum(dim=2).sum(dim=0) / (v - 1)
    return gather_with_grad(per_sample / n_assign).mean()


def embed_by_resolution(backbone: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """[V x [b, C, s, s]] -> [V*b, D]; views of one size go through the encoder together (SwAV's code)."""
    out, start = [], 0
    while start < len(views):
        end = start
        while end < len(views) and views[end].shape == views[start].shape:
            end += 1
        out.append(encoder_embedding(backbone, torch.cat(views[start:end])))
        start = end
    return torch.cat(out)


@register_method("swav")
class SwAV(PretextTask):
    """SwAV: multi-crop, Sinkhorn codes on global crops, swapped prediction (SwAV eq. 1-2, 3.1-3.2; CoPer III.A, app. B)."""

    Config = SwAVConfig
    default_backbone = "resnet_unet"  # CoPer: ResNet-50 (section IV.A) and VGG
    supported_backbones = ("resnet_unet", "vgg_unet")
    transfer = "encoder"
    trains_whole_backbone = False  # the U-Net decoder is unused while pretraining
    paper = "coper_perceptual_metric"
    paper_recipe = Recipe(
        steps=None,
        epochs=400,
        batch_size=96,
        lr=0.6,
        optimizer="sgd",
        weight_decay=1e-6,
        momentum=0.9,
        schedule="cosine",
        warmup_steps=935,
        source=(
            "CoPer appendix B: SGD, cosine from base lr 0.6 (final 0.0006; here cosine to 0), 5 warm-up epochs, 400 epochs, "
            "batch 96, 192/96 multi-crops. Warm-up in steps: 5 x the ~187 iterations per epoch the appendix gives (Fig. 6). "
            "Not stated in CoPer: weight decay (SwAV code default 1e-6), momentum (0.9); SwAV's LARS is not used"
        ),
    )

    def __init__(self, backbone: nn.Module, cfg: SwAVConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        # SwAV's head: Linear -> BN -> ReLU -> Linear. No bias before BN: it would get no gradient.
        self.projector = nn.Sequential(
            nn.Linear(encoder_width(backbone), cfg.projection_hidden_dim, bias=False),
            nn.BatchNorm1d(cfg.projection_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.projection_hidden_dim, cfg.projection_dim),
        )
        self.prototypes = nn.Linear(cfg.projection_dim, cfg.n_prototypes, bias=False)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # training steps seen, for freeze_prototypes_steps

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, H, W]
        cfg = self.cfg
        views = multi_crop(x, cfg, generator=generator)  # globals [B, C, g, g] first, then locals [B, C, l, l]
        check_view_sizes(views)
        z = F.normalize(self.projector(embed_by_resolution(self.backbone, views)), dim=1)  # [V*B, d]
        # SwAV's code renormalises the prototype weights in place each step; normalising in the graph
        # gives the same scores (cosines) without mutating a parameter inside forward.
        prototypes = F.normalize(self.prototypes.weight, dim=1)  # [K, d]
        if cfg.freeze_prototypes_steps and int(self.step) < cfg.freeze_prototypes_steps:
            prototypes = prototypes.detach()
        if self.training and torch.is_grad_enabled():
            self.step += 1
        scores = (z @ prototypes.t()).reshape(len(views), x.shape[0], -1)  # [V, B, K]
        loss = swav_loss(scores, n_assign=cfg.n_global_crops, temperature=cfg.temperature, epsilon=cfg.epsilon,
                         iterations=cfg.sinkhorn_iterations)
        return {"loss": loss}
