"""Source identification (Zhang et al., "Source Identification", sections 3.3, 5.2, 5.4): the shared
pretext of CSI, WSI and DSI.

The network sees M̃ mixtures that all contain one target slice s_1 (each mixture a convex
combination of Ñ sources, eq. 12) and reconstructs s_1 with eq. 4's L1 + L2 norms (both divided by
the voxel count, ``source_identification_loss``, which keeps the paper's L1:L2 ratio). The
variants differ in where the sources come from (``data_spec``) and in ``prepare_pool``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from benchmark.blocks.groups import BACKBONES_2D, BACKBONES_3D, unsupported
from benchmark.blocks.losses import source_identification_loss
from benchmark.blocks.mixing import mix_sources
from benchmark.blocks.pretext import DataSpec, PretextTask, Recipe
from benchmark.blocks.recipes import SI_PAPER_RECIPE


@dataclass(frozen=True)
class SIConfig:
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


class SourceIdentificationPretext(PretextTask):
    """Reconstruct the shared target slice from M̃ mixtures of a source pool (SI paper eq. 12, eq. 4)."""

    Config: ClassVar[type] = SIConfig
    default_backbone: ClassVar[str] = "unet2d"
    # Any 2D encoder-decoder reads the T×M̃ mixture channels and writes T (section 5.4).
    supported_backbones: ClassVar[tuple[str, ...]] = BACKBONES_2D
    unsupported_backbones: ClassVar[dict[str, str]] = unsupported(
        BACKBONES_3D, "source identification mixes 2D axial slices drawn from a source pool (SI paper 3.3, 5.2); "
                      "its pools are slices, so it needs a 2D (slice-wise) backbone")
    transfer: ClassVar[str] = "all"  # encoder and decoder transfer; only input/output layers are replaced (section 5.4)
    replace_input_on_transfer: ClassVar[bool] = True
    paper: ClassVar[str] = "source_identification"
    # SI 5.5.3: rotation, scaling, flipping and elastic deformation "applied to the original 2D images as data
    # augmentation for all experiments" (proxy tasks included); each slice of a pool on its own (benchmark.data).
    pretrain_aug: ClassVar[str] = "si"
    paper_recipe: ClassVar[Recipe] = SI_PAPER_RECIPE
    same_patient: ClassVar[bool] = False

    @classmethod
    def backbone_channels(cls, cfg: SIConfig, *, in_channels: int) -> tuple[int, int]:
        return in_channels * cfg.num_mixtures, in_channels  # T×M̃ in, T out (section 5.4)

    @classmethod
    def data_spec(cls, cfg: SIConfig) -> DataSpec:
        return DataSpec(kind="source_pool", pool_size=cfg.pool_size, same_patient=cls.same_patient)

    def prepare_pool(self, pool: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """The pool the mixtures are drawn from (identity; DSI replaces the non-targets by noise)."""
        return pool

    def forward(self, batch, *, generator):
        pool = self.prepare_pool(batch["sources"], generator=generator)  # [B, N, C, H, W]; pool[:, 0] is the target
        mixtures, _, _ = mix_sources(
            pool, sources_per_mixture=self.cfg.sources_per_mixture, num_mixtures=self.cfg.num_mixtures, generator=generator
        )
        b, m, c = mixtures.shape[:3]
        prediction = self.backbone(mixtures.reshape(b, m * c, *mixtures.shape[3:]))  # [B, C, H, W]
        return {"loss": source_identification_loss(prediction, pool[:, 0])}
