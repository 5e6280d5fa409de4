"""Reconstruction pretext of the SI paper's Models-Genesis baselines (Zhang et al., section 4, eq. 4).

The network sees the corrupted image and reconstructs the original with the L1 + L2 loss of
eq. 4. The SI paper trains every proxy task, its own and these baselines, with the same 2D U-Net
and the same loss and optimisation (section 5.4: "the same network backbone for both the
self-supervision proxy tasks and the segmentation main task"; eq. 4), so only ``corrupt``
differs between subclasses. The corruptions (``benchmark.blocks.genesis``) work in 2D and 3D and
only the backbone's forward is used, so every backbone runs them.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from benchmark.blocks.groups import ALL_BACKBONES
from benchmark.blocks.losses import l1_plus_l2
from benchmark.blocks.pretext import PretextTask, Recipe
from benchmark.blocks.recipes import SI_PAPER_RECIPE


class ReconstructionPretext(PretextTask):
    """Corrupt the input, reconstruct the original with the L1 + L2 loss of eq. 4 (SI paper section 4)."""

    default_backbone: ClassVar[str] = "unet2d"
    supported_backbones: ClassVar[tuple[str, ...]] = ALL_BACKBONES
    transfer: ClassVar[str] = "all"  # encoder and decoder transfer; input/output layers replaced (section 5.4)
    replace_input_on_transfer: ClassVar[bool] = True
    paper: ClassVar[str] = "source_identification"
    pretrain_aug: ClassVar[str] = "si"  # SI 5.5.3: the same augmentation "for all experiments", these baselines included
    paper_recipe: ClassVar[Recipe] = SI_PAPER_RECIPE  # SI 5.5: one recipe for all proxy tasks

    def corrupt(self, x: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, *spatial] -> (network input, reconstruction target), both shaped like x."""
        raise NotImplementedError

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, *spatial]
        corrupted, target = self.corrupt(x, generator=generator)
        prediction = self.backbone(corrupted)  # [B, C, *spatial]
        return {"loss": l1_plus_l2(prediction, target)}
