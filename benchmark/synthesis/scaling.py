"""The pix2pix intensity domain of the synthesis kind and the 8-bit slices it is scored on (CoPer IV.A.2, appendix C).

CoPer's images are 2D slices whose "intensities [are rescaled] to [0, 255]" (IV.A.2); pix2pix reads them "normalized
with a mean of 0.5 and a standard deviation of 0.5" (appendix C), i.e. in [-1, 1], the range of its generator's tanh.
The suite's volumes are z-scored inside the body with background 0 (``tasks/intensity.py``); ``SliceScale`` maps each
axial slice of each series into the pix2pix domain:

* inside the foreground, the voxels where any SOURCE series is non-zero (what the generator's input shows, so the map
  never needs the target to find the body), the slice's foreground [min, max] -> [-1, 1];
* outside it -1 (black: the paper's background 0 of [0, 255]).

It keeps each slice's (min, max), so ``to_zscore`` maps an image of the domain back onto the z-scored scale (the
background by the same slope, -1 -> 0). The CoPer
metric and loss networks were pretrained on z-scored slices (the normal pretraining pipeline) and the segmenter on
z-scored cases, so they read the real and the synthetic image there, both mapped by the REAL slice's transform (as an
evaluation maps both images by one transform; the generator never sees it).

``to_levels``: [-1, 1] -> the paper's gray levels 0..255 (Table III's PSNR / SSIM scale), rounded to 8 bit (pix2pix's
``tensor2im`` truncates; rounding leaves an 8-bit image unchanged by a round trip) or kept as floats.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-8
QUALITY_SCALES = ("slice_8bit", "slice_float")  # Protocol.synthesis_quality


def foreground(sources: torch.Tensor) -> torch.Tensor:
    """[m, *spatial] source series -> bool [*spatial]: any source non-zero (the z-score's background is exactly 0)."""
    return (sources != 0).any(dim=0)


def slice_ranges(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per series and axial slice, the [min, max] of ``image`` [C, X, Y, Z] over ``mask`` [X, Y, Z]: two [C, Z]
    (0, 0 for a slice without foreground)."""
    big = torch.finfo(image.dtype).max
    inside = mask[None].expand_as(image)
    lo = torch.where(inside, image, big).amin(dim=(1, 2))
    hi = torch.where(inside, image, -big).amax(dim=(1, 2))
    empty = ~mask.any(dim=0).any(dim=0)  # [Z]
    return lo.masked_fill(empty, 0.0), hi.masked_fill(empty, 0.0)


def to_pix2pix(image: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """z-scored ``image`` -> [-1, 1]: (x - lo) / (hi - lo) * 2 - 1 inside ``mask``, -1 outside. ``lo``, ``hi`` and
    ``mask`` broadcast against ``image`` (e.g. [C, 1, 1, Z] and [1, X, Y, Z] for a volume [C, X, Y, Z])."""
    y = ((image - lo) / (hi - lo).clamp_min(EPS) * 2 - 1).clamp(-1, 1)
    return torch.where(mask, y, torch.full_like(y, -1.0))


def to_zscore(y: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inverse of ``to_pix2pix`` (same broadcasting): lo + (y + 1) / 2 * (hi - lo) inside ``mask``; outside it the
    same slope anchored at the background, (y + 1) / 2 * (hi - lo), so -1 -> 0 (a real image comes back exactly) and a
    synthetic image's background errors stay visible to the networks that read this scale, as large as inside."""
    return (y + 1) / 2 * (hi - lo) + torch.where(mask, lo, torch.zeros_like(lo))


def to_levels(y: torch.Tensor, scale: str = "slice_8bit") -> torch.Tensor:
    """[-1, 1] -> gray levels in [0, 255]: rounded to 8 bit (``slice_8bit``, the paper's images) or not (``slice_float``)."""
    if scale not in QUALITY_SCALES:
        raise ValueError(f"synthesis quality scale {scale!r}: expected one of {', '.join(QUALITY_SCALES)}")
    levels = ((y.clamp(-1, 1) + 1) / 2 * 255)
    return levels.round() if scale == "slice_8bit" else levels


@dataclass(frozen=True)
class SliceScale:
    """One case's map into the pix2pix domain: ``lo``, ``hi`` [C, Z] per series and axial slice, ``mask`` [X, Y, Z]."""

    lo: torch.Tensor
    hi: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def of(cls, image: torch.Tensor, *, sources: tuple[int, ...]) -> "SliceScale":
        """The map of a z-scored case ``image`` [C, X, Y, Z] whose foreground the ``sources`` channels show."""
        mask = foreground(image[list(sources)])
        lo, hi = slice_ranges(image, mask)
        return cls(lo=lo, hi=hi, mask=mask)

    def _args(self, channels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = list(channels) if channels is not None else slice(None)
        return self.lo[idx][:, None, None, :], self.hi[idx][:, None, None, :], self.mask[None]

    def to_pix2pix(self, image: torch.Tensor, channels: tuple[int, ...] | None = None) -> torch.Tensor:
        """[c, X, Y, Z] (the case's series ``channels``, default all) -> [-1, 1]."""
        return to_pix2pix(image, *self._args(channels))

    def to_zscore(self, y: torch.Tensor, channels: tuple[int, ...] | None = None) -> torch.Tensor:
        """[c, X, Y, Z] of the pix2pix domain, read as series ``channels`` -> their z-scored scale."""
        return to_zscore(y, *self._args(channels))

    def slices(self) -> torch.Tensor:
        """Indices of the axial slices holding foreground (all when none does)."""
        idx = torch.nonzero(self.mask.flatten(0, 1).any(dim=0)).flatten()
        return idx if len(idx) else torch.arange(self.mask.shape[-1], device=self.mask.device)
