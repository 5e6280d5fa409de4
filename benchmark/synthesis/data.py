"""pix2pix's training samples (CoPer appendix C; Isola et al. 2017, section 6.2 / the authors' ``--preprocess
resize_and_crop``): "The images are resized to 286 x 286, and random crops of size 256 x 256 are taken during training
while we use a fixed image size of 256 x 256 at inference. The images are flipped horizontally with a probability of
0.5 and normalized with a mean of 0.5 and a standard deviation of 0.5."

Each sample is one axial slice holding foreground, every series mapped into the pix2pix domain by its own slice map
(``scaling.SliceScale``: [-1, 1], background -1), then jittered: resized by ``LOAD_RATIO`` = 286 / 256 (the suite infers
on the native grid, so the training content is 286/256 times the inference scale, as in pix2pix), randomly cropped to
the profile's ``roi`` (padded with background where the resized slice is smaller) and flipped along X (left-right: the
horizontal axis of an axial slice) with probability 0.5. At the paper's crop (256) and BraTS slices (240) that is a
268 x 268 slice and a 256 crop; at the smoke crop (64) of 64 x 64 slices a 72 x 72 slice and a 64 crop.

A sample also carries each series' slice range (``scale`` [C, 2]: min, max) and the foreground (``mask`` [1, *roi]),
so that the CoPer loss can read both images on its network's z-scored scale (``scaling.to_zscore``). Draws come from a
generator seeded by (seed, index), so sample i is the same for every method of a comparison.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from benchmark.volumes import body_slices
from benchmark.errors import BenchmarkInputError
from benchmark.synthesis.scaling import foreground, slice_ranges, to_pix2pix

LOAD_RATIO = 286 / 256  # pix2pix: --load_size 286, --crop_size 256
FLIP_PROB = 0.5


def jitter(image: torch.Tensor, mask: torch.Tensor, *, roi: tuple[int, int], rng: np.random.Generator,
           load_ratio: float = LOAD_RATIO, flip_prob: float = FLIP_PROB) -> tuple[torch.Tensor, torch.Tensor]:
    """pix2pix's random jitter of a slice ``image`` [C, X, Y] in [-1, 1] and its ``mask`` [X, Y] (bool): bicubic resize by
    ``load_ratio`` (the mask: nearest), a random ``roi`` crop (background-padded if smaller), a flip along X with
    probability ``flip_prob`` -> ([C, *roi], [*roi])."""
    size = [max(1, round(s * load_ratio)) for s in image.shape[1:]]
    if list(size) != list(image.shape[1:]):
        image = F.interpolate(image[None], size=size, mode="bicubic", align_corners=False)[0].clamp(-1, 1)
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5
    pad = [max(0, r - s) for r, s in zip(roi, size)]
    if any(pad):  # F.pad lists the last axis first
        image = F.pad(image, (0, pad[1], 0, pad[0]), value=-1.0)
        mask = F.pad(mask, (0, pad[1], 0, pad[0]), value=False)
    starts = [int(rng.integers(0, s - r + 1)) for s, r in zip(image.shape[1:], roi)]
    window = (slice(starts[0], starts[0] + roi[0]), slice(starts[1], starts[1] + roi[1]))
    image, mask = image[(slice(None), *window)], mask[window]
    if rng.random() < flip_prob:
        image, mask = image.flip(1), mask.flip(0)
    return image.contiguous(), mask.contiguous()


class SliceJitterDataset(Dataset):
    """``length`` pix2pix samples from ``volumes`` (module docstring): {"image": [C, *roi] in [-1, 1] (every series; the
    kind splits sources and targets), "scale": [C, 2] (each series' slice min, max on the z-scored scale), "mask":
    [1, *roi] bool (the sources' foreground)}."""

    def __init__(self, volumes, *, roi, length: int, seed: int, sources: tuple[int, ...], load_ratio: float = LOAD_RATIO,
                 flip_prob: float = FLIP_PROB) -> None:
        if not volumes:
            raise BenchmarkInputError("no training cases to sample from; expected at least one")
        if len(roi) != 2:
            raise ValueError(f"pix2pix trains on 2D slices; got a {len(roi)}D roi {tuple(roi)}")
        self.volumes, self.roi, self.length, self.seed, self.sources = volumes, tuple(roi), length, seed, tuple(sources)
        self.load_ratio, self.flip_prob = load_ratio, flip_prob

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        volume = self.volumes[int(rng.integers(len(self.volumes)))]
        candidates = body_slices(volume)
        z = int(candidates[rng.integers(len(candidates))]) if len(candidates) else int(rng.integers(volume.image.shape[-1]))
        image = torch.from_numpy(np.array(volume.image[..., z], dtype=np.float32))  # [C, X, Y]: a copy of the memory map's slice
        mask = foreground(image[list(self.sources)])  # [X, Y]
        lo, hi = (r[:, 0] for r in slice_ranges(image[..., None], mask[..., None]))  # [C] each
        scaled = to_pix2pix(image, lo[:, None, None], hi[:, None, None], mask[None])
        scaled, mask = jitter(scaled, mask, roi=self.roi, rng=rng, load_ratio=self.load_ratio, flip_prob=self.flip_prob)
        return {"image": scaled, "scale": torch.stack([lo, hi], dim=1), "mask": mask[None]}
