"""Cross-patient source identification (Zhang et al., "Source Identification", sections 3.3, 5.2, 5.4).

The network sees M̃ mixtures that all contain one target slice s_1 (each mixture a convex
combination of Ñ sources, eq. 12) and reconstructs s_1 with an L1 + L2 loss (eq. 4).
Sources are N axial slices of N different patients (CSI, section 5.2.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.methods.base import DataSpec, PretextTask, Recipe, register_method


@dataclass(frozen=True)
class CSIConfig:
    pool_size: int = 5  # N: sources drawn per training sample (section 5.2, "N = 5")
    sources_per_mixture: int = 3  # Ñ: sources in each mixture, the target included
    num_mixtures: int = 2  # M̃: mixtures, all sharing the target source

    def __post_init__(self) -> None:
        if self.num_mixtures < 2:
            raise ValueError(f"num_mixtures (M̃) must be >= 2 so the target is identifiable (section 3.3), got {self.num_mixtures}")
        if self.sources_per_mixture < 2:
            raise ValueError(f"sources_per_mixture (Ñ) must be >= 2, got {self.sources_per_mixture}")
        needed = 1 + self.num_mixtures * (self.sources_per_mixture - 1)
        if self.pool_size < needed:
            raise ValueError(
                f"pool_size (N) = {self.pool_size} is too small: {self.num_mixtures} mixtures of "
                f"{self.sources_per_mixture} sources sharing one target need N >= {needed} distinct sources (eq. 12)"
            )


def convex_weights(shape: tuple[int, ...], *, generator: torch.Generator) -> torch.Tensor:
    """Weights uniform on the simplex over the last dim (Dirichlet(1,...,1)): all in [0, 1], summing to 1."""
    u = torch.rand(shape, generator=generator).clamp_min(1e-12)
    e = -torch.log(u)
    return e / e.sum(dim=-1, keepdim=True)


def mix_sources(
    pool: torch.Tensor, *, sources_per_mixture: int, num_mixtures: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 12 generalised: M̃ mixtures of Ñ sources each, source 0 of the pool in every mixture.

    pool: [B, N, C, H, W]. Non-target sources are distinct across mixtures (drawn without
    replacement from pool[1:]). Returns mixtures [B, M̃, C, H, W], weights [B, M̃, Ñ] and the
    pool index of each weighted source [B, M̃, Ñ] (column 0 is always the target, index 0).
    """
    b, n = pool.shape[:2]
    others = sources_per_mixture - 1
    order = torch.argsort(torch.rand(b, n - 1, generator=generator), dim=1) + 1  # random non-target order
    chosen = order[:, : num_mixtures * others].reshape(b, num_mixtures, others)
    index = torch.cat([torch.zeros(b, num_mixtures, 1, dtype=torch.long), chosen], dim=2)  # [B, M̃, Ñ]
    weights = convex_weights((b, num_mixtures, sources_per_mixture), generator=generator)
    # Random draws happen on the generator's (CPU) device, then move to the data's device.
    index, weights = index.to(pool.device), weights.to(device=pool.device, dtype=pool.dtype)
    batch_index = torch.arange(b, device=pool.device).view(b, 1, 1)
    sources = pool[batch_index, index]  # [B, M̃, Ñ, C, H, W]
    mixtures = (weights.view(*weights.shape, 1, 1, 1) * sources).sum(dim=2)
    return mixtures, weights, index


def l1_plus_l2(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4: L1 norm + L2 norm of the error, per image, averaged over the batch.

    The norms are divided by n and sqrt(n) (n = voxels per image), i.e. mean absolute error plus
    root-mean-square error, so the loss does not grow with the crop size; the paper's relative
    weighting of the two norms for a given image size is unchanged.
    """
    diff = (prediction - target).flatten(1)
    return (diff.abs().mean(dim=1) + diff.pow(2).mean(dim=1).sqrt()).mean()


def foreground_overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True if the foregrounds (any non-zero channel) of two slices [C, H, W] overlap (section 5.2 exclusion rule)."""
    return bool(((a != 0).any(dim=0) & (b != 0).any(dim=0)).any())


@register_method("csi")
class CrossPatientSI(PretextTask):
    """Cross-patient SI: reconstruct the shared target slice from M̃ mixtures (SI paper eq. 12, section 5.2.1)."""

    Config = CSIConfig
    default_backbone = "unet2d"
    supported_backbones = ("unet2d",)
    transfer = "all"  # encoder and decoder transfer; only input/output layers are replaced (section 5.4)
    replace_input_on_transfer = True
    paper = "source_identification"
    paper_recipe = Recipe(
        steps=None,
        epochs=1000,
        iterations_per_epoch=250,  # nnU-Net epochs, which the paper follows (section 5.5.3)
        batch_size=1,  # section 5.5.1
        lr=1e-2,
        optimizer="sgd",
        momentum=0.99,
        weight_decay=3e-5,
        schedule="poly",
        source="SI paper 5.5.1 and 5.5.3: SGD lr 1e-2, momentum 0.99, wd 3e-5, poly, 1000 epochs, batch 1",
    )
    same_patient = False

    @classmethod
    def backbone_channels(cls, cfg: CSIConfig, *, in_channels: int) -> tuple[int, int]:
        return in_channels * cfg.num_mixtures, in_channels  # T×M̃ in, T out (section 5.4)

    @classmethod
    def data_spec(cls, cfg: CSIConfig) -> DataSpec:
        return DataSpec(kind="source_pool", pool_size=cfg.pool_size, same_patient=cls.same_patient)

    def forward(self, batch, *, generator):
        pool = batch["sources"]  # [B, N, C, H, W]; pool[:, 0] is the target
        mixtures, _, _ = mix_sources(
            pool, sources_per_mixture=self.cfg.sources_per_mixture, num_mixtures=self.cfg.num_mixtures, generator=generator
        )
        b, m, c, h, w = mixtures.shape
        prediction = self.backbone(mixtures.reshape(b, m * c, h, w))  # [B, C, H, W]
        return {"loss": l1_plus_l2(prediction, pool[:, 0])}
