"""Random initialisation baseline ("CNN" in the SI paper, Kaiming init, section 5.4): no pretext task.

Run once per backbone used by the other methods, with the same fine-tuning recipe, so each
pretrained method is compared with scratch on its own backbone.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.methods.base import PretextTask, Recipe, register_method


@dataclass(frozen=True)
class ScratchConfig:
    pass


@register_method("scratch")
class Scratch(PretextTask):
    """No pretraining: the fine-tuned network starts from its random initialisation."""

    Config = ScratchConfig
    default_backbone = "unet2d"
    supported_backbones = ("unet2d", "swin_unetr", "vit", "vgg_unet", "resnet_unet")
    pretrains = False
    paper = "source_identification"
    paper_recipe = Recipe(steps=0, batch_size=1, lr=0.0, source="no pretraining")

    def forward(self, batch, *, generator):
        raise RuntimeError(f"{self.registry_name} has no pretext task; the planner never pretrains it")
