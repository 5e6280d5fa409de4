"""Random initialisation baseline ("CNN" in the SI paper, Kaiming init, section 5.4): no pretext task.

Run once per backbone used by the other methods, with the same fine-tuning recipe, so each
pretrained method is compared with scratch on its own backbone.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.pretexts.scratch import NoPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class ScratchConfig:
    pass


@register_method("scratch")
class Scratch(NoPretext):
    """No pretraining: the fine-tuned network starts from its random initialisation."""

    Config = ScratchConfig
