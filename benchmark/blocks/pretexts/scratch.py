"""No pretext (the SI paper's "CNN" baseline, Kaiming init, section 5.4): the base of scratch and restart."""
from __future__ import annotations

from typing import ClassVar

from benchmark.blocks.groups import ALL_BACKBONES
from benchmark.blocks.pretext import PretextTask, Recipe


class NoPretext(PretextTask):
    """No pretraining: the fine-tuned network starts from its random initialisation."""

    default_backbone: ClassVar[str] = "unet2d"
    supported_backbones: ClassVar[tuple[str, ...]] = ALL_BACKBONES
    pretrains: ClassVar[bool] = False
    paper: ClassVar[str] = "source_identification"
    paper_recipe: ClassVar[Recipe] = Recipe(steps=0, batch_size=1, lr=0.0, source="no pretraining")

    @classmethod
    def unsupported_reason(cls, *, task, backbone: str) -> str | None:
        """None: with no pretext, every registered backbone fine-tunes from its initialisation (a plugin's too: the
        baseline of a plugin backbone or of an external checkpoint on it); the task's kind may still rule a cell out."""
        return None

    def forward(self, batch, *, generator):
        raise RuntimeError(f"{self.registry_name} has no pretext task; the planner never pretrains it")
