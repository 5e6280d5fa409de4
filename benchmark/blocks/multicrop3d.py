"""DINO's multi-crop views (Caron et al. 2021, section 3.1 and ``main_dino.DataAugmentationDINO``) of 3D crops.

Two global views and ``local_crops_number`` local views of every sample: random resized crops (the crop a volume
fraction of the input in ``*_crops_scale``, resized to the view size), a horizontal flip (p 0.5), brightness /
contrast jitter (p 0.8, strength 0.4) and a Gaussian blur (p 1.0 on the first global view, 0.1 on the second, 0.5
on the local ones; sigma 0.1-2 pixels at DINO's 224-pixel crops). Vectorised over the batch; every random number
comes from the ``torch.Generator`` passed in, so the same seed gives the same views.

What the 3D, gray-valued medical input changes, each choice made here:

* Sizes. The global views have the network's crop size (DINO: 224, the ViT's input); a local view has
  ``local_crop_ratio`` (96 / 224) of it along every axis, rounded to a multiple of the patch (at least one patch),
  so its tokens tile it (the ViT interpolates its position embedding to the smaller grid, as DINO's does).
  The blur's sigma is scaled by crop / 224, as ``benchmark.blocks.multicrop`` scales SwAV's.
* Crops. Scales are VOLUME fractions of the input crop (DINO's are area fractions of the image); the aspect ratio
  of each axis is log-uniform in [3/4, 4/3] around the cube (torchvision's range for the one 2D ratio).
  Interpolation is trilinear (DINO: bicubic; ``grid_sample`` has no tricubic).
* Series. Every series of a sample gets the same crop, flip and jitter (they are registered images of one scan,
  as the colour channels of an RGB image are).
* Left out: colour saturation / hue and random grayscale (no-ops on gray images), and solarization (p 0.2 on the
  second global view), which inverts the pixels above 128 of an 8-bit image; z-scored MR and [0, 1]-scaled CT
  have no such fixed range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

N_GLOBAL = 2  # DINO's two global views (the teacher sees only these; DINOLoss chunks its input in 2)
REFERENCE_CROP = 224  # DINO's global crop side in pixels, to which the blur's sigma refers


@dataclass(frozen=True)
class DINOViewsConfig:
    """Multi-crop settings (``main_dino.py`` defaults); DINO's Config extends it."""

    global_crops_scale: tuple[float, float] = (0.4, 1.0)
    local_crops_scale: tuple[float, float] = (0.05, 0.4)
    local_crops_number: int = 8
    local_crop_ratio: float = 96 / 224  # local view side / global view side (DINO: 96 and 224 pixels)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    blur_probs: tuple[float, float, float] = (1.0, 0.1, 0.5)  # first global, second global, local views
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels at a 224-pixel crop (DINO's utils.GaussianBlur radius range)

    def __post_init__(self) -> None:
        for name in ("global_crops_scale", "local_crops_scale", "blur_probs", "blur_sigma"):  # JSON lists back to tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("global_crops_scale", "local_crops_scale"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"{name} must be (min, max) volume fractions with 0 < min <= max <= 1, got {(lo, hi)}")
        if self.local_crops_number < 0:
            raise ValueError(f"local_crops_number must be >= 0, got {self.local_crops_number}")
        if not 0.0 < self.local_crop_ratio <= 1.0:
            raise ValueError(f"local_crop_ratio must be in (0, 1], got {self.local_crop_ratio}")
        if len(self.blur_probs) != 3 or not all(0.0 <= p <= 1.0 for p in (*self.blur_probs, self.flip_prob, self.jitter_prob)):
            raise ValueError("flip_prob, jitter_prob and the three blur_probs must be probabilities in [0, 1]")
        if self.brightness < 0 or self.contrast < 0:
            raise ValueError(f"brightness and contrast must be >= 0, got {self.brightness}, {self.contrast}")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must be (min, max) with 0 < min <= max, got {self.blur_sigma}")


def local_view_size(crop: tuple[int, ...], *, ratio: float, patch: int) -> tuple[int, ...]:
    """Side of a local view along each axis: ``ratio`` of the crop, rounded to a multiple of ``patch`` (>= one patch)."""
    return tuple(max(patch, int(round(c * ratio / patch)) * patch) for c in crop)


def resized_crop_3d(x: torch.Tensor, *, size: tuple[int, int, int], scale: tuple[float, float], u: torch.Tensor,
                    flip: torch.Tensor) -> torch.Tensor:
    """A random resized crop (+ flip of the last axis) of every sample, trilinear, by one grid_sample.

    x [B, C, D, H, W]; u [B, 7] uniforms (volume fraction, three log aspect ratios, three positions); flip [B] bool.
    The crop covers ``scale`` of the volume with a log-uniform aspect in [3/4, 4/3] per axis (clipped to the input).
    Returns [B, C, *size].
    """
    b, c = x.shape[:2]
    dims = torch.tensor(x.shape[2:], dtype=x.dtype, device=x.device)  # (D, H, W)
    volume = scale[0] + (scale[1] - scale[0]) * u[:, 0]  # [B] fraction of the input volume
    log_aspect = (u[:, 1:4] * 2.0 - 1.0) * math.log(4 / 3)  # [B, 3] in [log 3/4, log 4/3]
    log_aspect = log_aspect - log_aspect.mean(dim=1, keepdim=True)  # the product of the three factors is 1
    side = (dims * volume[:, None] ** (1 / 3) * log_aspect.exp()).minimum(dims)  # [B, 3] voxels
    centre = side / 2 + (dims - side) * u[:, 4:7]
    theta = torch.zeros(b, 3, 4, dtype=x.dtype, device=x.device)  # output [-1, 1] coords (x=W, y=H, z=D) -> input ones
    for row, axis in enumerate((2, 1, 0)):  # theta's rows are W, H, D; side / centre are (D, H, W)
        theta[:, row, row] = side[:, axis] / dims[axis]
        theta[:, row, 3] = 2 * centre[:, axis] / dims[axis] - 1
    theta[:, 0, 0] = theta[:, 0, 0] * torch.where(flip, -1.0, 1.0).to(x.dtype)  # horizontal flip: the W axis
    grid = F.affine_grid(theta, [b, c, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)  # trilinear on 5D


def intensity_jitter_3d(x: torch.Tensor, *, brightness: float, contrast: float, u: torch.Tensor) -> torch.Tensor:
    """ColorJitter's brightness then contrast (fixed order) of every sample, over all its series; u [B, 2] uniforms.
    No clamping: MR is z-scored, not an 8-bit image."""
    def factor(strength: float, v: torch.Tensor) -> torch.Tensor:
        lo = max(0.0, 1.0 - strength)
        return (lo + (1.0 + strength - lo) * v).view(-1, *([1] * (x.dim() - 1)))

    y = x * factor(brightness, u[:, 0])
    mean = y.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    return (y - mean) * factor(contrast, u[:, 1]) + mean


def gaussian_blur_3d(x: torch.Tensor, sigma: torch.Tensor, *, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (voxels) per sample; x [B, C, D, H, W], sigma [B]; borders replicated.

    Along each axis the output is the kernel-weighted sum of the 2r + 1 shifted copies of the input: with a kernel
    per sample and r of 1-3 voxels this is much faster on a CPU than a grouped conv3d."""
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [B, 2r+1]
    weights = kernel.view(x.shape[0], 1, 1, 1, 1, -1)
    y = x
    for dim in (2, 3, 4):
        n = y.shape[dim]
        edges = (y.narrow(dim, 0, 1).repeat_interleave(radius, dim=dim), y.narrow(dim, n - 1, 1).repeat_interleave(radius, dim=dim))
        padded = torch.cat([edges[0], y, edges[1]], dim=dim)  # replicate padding
        y = sum(weights[..., k] * padded.narrow(dim, k, n) for k in range(2 * radius + 1))
    return y


def _one_view(x: torch.Tensor, cfg: DINOViewsConfig, *, size, scale, blur_prob: float, factor: float,
              generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(x.shape[0], 13, generator=generator).to(device=x.device, dtype=x.dtype)  # all draws of this view
    view = resized_crop_3d(x, size=size, scale=scale, u=u[:, :7], flip=u[:, 7] < cfg.flip_prob)
    jittered = intensity_jitter_3d(view, brightness=cfg.brightness, contrast=cfg.contrast, u=u[:, 8:10])
    view = torch.where((u[:, 10] < cfg.jitter_prob).view(-1, 1, 1, 1, 1), jittered, view)
    lo, hi = cfg.blur_sigma[0] * factor, cfg.blur_sigma[1] * factor
    blurred = gaussian_blur_3d(view, lo + (hi - lo) * u[:, 11], radius=max(1, math.ceil(3 * hi)))
    return torch.where((u[:, 12] < blur_prob).view(-1, 1, 1, 1, 1), blurred, view)


def dino_views(x: torch.Tensor, cfg: DINOViewsConfig, *, patch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """x [B, S, D, H, W] -> 2 global views [B, S, D, H, W] then ``local_crops_number`` local views [B, S, *local]."""
    crop = tuple(x.shape[2:])
    factor = min(crop) / REFERENCE_CROP
    local = local_view_size(crop, ratio=cfg.local_crop_ratio, patch=patch)
    g1, g2, lp = cfg.blur_probs
    views = [_one_view(x, cfg, size=crop, scale=cfg.global_crops_scale, blur_prob=p, factor=factor, generator=generator) for p in (g1, g2)]
    views += [_one_view(x, cfg, size=local, scale=cfg.local_crops_scale, blur_prob=lp, factor=factor, generator=generator)
              for _ in range(cfg.local_crops_number)]
    return views
