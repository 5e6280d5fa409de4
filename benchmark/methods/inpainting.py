"""Inpainting baseline (SI paper section 4.1, eq. 8): zero random grid cells, reconstruct the image."""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.genesis import grid_inpaint
from benchmark.blocks.pretexts.reconstruction import ReconstructionPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class InpaintingConfig:
    grid_size: int = 8  # cell side g in voxels; the paper tuned [2, 2] to [64, 64] (section 5.3)
    # γ: probability that a cell is KEPT (eq. 8: g(I) if B(γ) = 1, else 0). The paper tuned the
    # masking percentage over 0-100% on validation and does not report the chosen value; 0.5 is
    # our documented default (the middle of the range). Note the sentence after eq. 8 says the
    # image retains "1 - γ"; we follow the equation, so the masked fraction is 1 - γ.
    keep_prob: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.grid_size, int) and not isinstance(self.grid_size, bool) and self.grid_size >= 1):
            raise ValueError(f"grid_size (cell side in voxels) must be an integer >= 1, got {self.grid_size!r}")
        if not 0.0 <= self.keep_prob <= 1.0:
            raise ValueError(f"keep_prob γ must be in [0, 1] (eq. 8), got {self.keep_prob}")


@register_method("inpainting")
class Inpainting(ReconstructionPretext):
    """Grid inpainting: cells kept with probability γ, else zeroed; L1 + L2 reconstruction (SI paper eq. 8)."""

    Config = InpaintingConfig

    def corrupt(self, x, *, generator):
        corrupted, _ = grid_inpaint(x, grid_size=self.cfg.grid_size, keep_prob=self.cfg.keep_prob, generator=generator)
        return corrupted, x
