"""Non-linear intensity shift baseline (SI paper section 4.4, eq. 11): random monotonic Bézier intensity map."""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.genesis import bezier_intensity_shift
from benchmark.blocks.pretexts.reconstruction import ReconstructionPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class IntensityShiftConfig:
    # Not a hyperparameter of the paper (section 5.3: "no hyperparameter to tune"): how finely the
    # Bézier curve is sampled before interpolating each voxel's new value.
    curve_samples: int = 1001

    def __post_init__(self) -> None:
        if self.curve_samples < 2:
            raise ValueError(f"curve_samples must be >= 2 to interpolate the Bézier curve, got {self.curve_samples}")


@register_method("intensity_shift")
class IntensityShift(ReconstructionPretext):
    """Intensity shift: min-max normalise, remap by a random monotonic Bézier curve, reconstruct (SI paper eq. 11)."""

    Config = IntensityShiftConfig

    def corrupt(self, x, *, generator):
        # The target is the min-max normalised original, the space the curve acts in.
        return bezier_intensity_shift(x, generator=generator, samples=self.cfg.curve_samples)
