"""Local pixel shuffling baseline (SI paper section 4.2, eq. 9): permute rows/columns inside random grid cells."""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.genesis import grid_pixel_shuffle
from benchmark.blocks.pretexts.reconstruction import ReconstructionPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class PixelShuffleConfig:
    grid_size: int = 8  # cell side g in voxels; the paper tuned [2, 2] to [64, 64] (section 5.3)
    # γ: probability that a cell is shuffled (eq. 9). Section 5.3 tunes only the grid size for
    # this task and the paper gives no value for γ; 0.5 is our documented default.
    shuffle_prob: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.grid_size, int) and not isinstance(self.grid_size, bool) and self.grid_size >= 1):
            raise ValueError(f"grid_size (cell side in voxels) must be an integer >= 1, got {self.grid_size!r}")
        if not 0.0 <= self.shuffle_prob <= 1.0:
            raise ValueError(f"shuffle_prob γ must be in [0, 1] (eq. 9), got {self.shuffle_prob}")


@register_method("pixel_shuffle")
class PixelShuffle(ReconstructionPretext):
    """Local pixel shuffling: P g(I) Q in cells selected with probability γ; L1 + L2 reconstruction (SI paper eq. 9)."""

    Config = PixelShuffleConfig

    def corrupt(self, x, *, generator):
        shuffled, _ = grid_pixel_shuffle(x, grid_size=self.cfg.grid_size, shuffle_prob=self.cfg.shuffle_prob, generator=generator)
        return shuffled, x
