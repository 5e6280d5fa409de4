"""Multi-crop views of 2D slices, shared by SwAV and SimSiam.

Views follow SwAV (Caron et al. 2020, section 3.2 "Multi-crop") as the CoPer paper sets it up
(appendix B): random resized crops (2 global, N local), horizontal flip (p 0.5), intensity
jitter (p 0.8; brightness and contrast factor 0.8) and Gaussian blur (SwAV code: p 0.5,
sigma in [0.1, 2] pixels). Everything is vectorised over the batch and every random number
comes from the ``torch.Generator`` passed in, so the same seed gives the same views.

Two choices the paper leaves open, made here:

* Crop sizes are in the paper's pixels (192 / 96 drawn from 240x240 slices). When the input
  side S is smaller than ``global_crop_size`` (the 64x64 smoke crops), every size -- global,
  local and the blur sigma -- is multiplied by S / global_crop_size: 192 / 96 become 64 / 32.
  Scales are area fractions of the input, so they need no change. A view is never smaller than
  the encoder can read (``minimum``: its total stride, at most S): on 32x32 inputs to a stride-32
  encoder the local views are 32 pixels too, still local by their area scale (0.05-0.14).
* Multi-channel slices (BraTS: 4 modalities): CoPer feeds one grayscale modality stacked three
  times (appendix B). ``channel_mode="single"`` does the same in one network: each sample draws
  one of its C channels and repeats it C times (all views of a sample share it), so the input
  layer keeps C channels and transfers to fine-tuning unchanged. ``"all"`` feeds the C-channel
  slice as it is. Colour jitter's saturation / hue and SimSiam's random grayscale are no-ops on
  such gray inputs and are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_PAIRS = ("global_crop_scale", "local_crop_scale", "blur_sigma")


@dataclass(frozen=True)
class MultiCropConfig:
    """View settings; SwAV's and SimSiam's configs extend it (their defaults override these)."""

    global_crop_size: int = 192  # CoPer appendix B
    global_crop_scale: tuple[float, float] = (0.14, 1.0)  # area fraction, CoPer appendix B
    n_global_crops: int = 2
    local_crop_size: int = 96  # CoPer appendix B
    local_crop_scale: tuple[float, float] = (0.05, 0.14)  # CoPer appendix B
    # CoPer names the 96-crops but not their count: SwAV's multi-crop uses 2x224 + 6x96 (section 4).
    n_local_crops: int = 6
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.8  # factor drawn from [max(0, 1 - b), 1 + b], as torchvision's ColorJitter
    contrast: float = 0.8
    blur_prob: float = 0.5  # CoPer: "random Gaussian blurring"; probability and sigma from SwAV's code
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    channel_mode: str = "single"  # "single" | "all", see the module docstring

    def __post_init__(self) -> None:
        for name in _PAIRS:  # saved configs come back as JSON lists; keep tuples (hashable, comparable)
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("global_crop_scale", "local_crop_scale"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"{name} must be (min, max) area fractions with 0 < min <= max <= 1, got {(lo, hi)}")
        if self.global_crop_size < 1 or self.local_crop_size < 1:
            raise ValueError(f"crop sizes must be >= 1, got global {self.global_crop_size}, local {self.local_crop_size}")
        if self.n_global_crops < 1 or self.n_local_crops < 0:
            raise ValueError(f"need n_global_crops >= 1 and n_local_crops >= 0, got {self.n_global_crops}, {self.n_local_crops}")
        for name in ("flip_prob", "jitter_prob", "blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.brightness < 0 or self.contrast < 0:
            raise ValueError(f"brightness and contrast must be >= 0, got {self.brightness}, {self.contrast}")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must be (min, max) with 0 < min <= max, got {self.blur_sigma}")
        if self.channel_mode not in ("single", "all"):
            raise ValueError(f"channel_mode must be 'single' or 'all', got {self.channel_mode!r}")


def crop_sizes(cfg: MultiCropConfig, side: int, *, minimum: int = 1) -> tuple[int, int, float]:
    """(global size, local size, factor) for an input whose shorter side is ``side``, no view below ``minimum`` pixels
    (nor above ``side``) (module docstring)."""
    factor = min(1.0, side / cfg.global_crop_size)
    floor = max(1, min(minimum, side))
    return max(floor, round(cfg.global_crop_size * factor)), max(floor, round(cfg.local_crop_size * factor)), factor


def resized_crop(x: torch.Tensor, *, size: int, scale: tuple[float, float], u: torch.Tensor, flip: torch.Tensor,
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """torchvision-style RandomResizedCrop (+ horizontal flip) of every sample, bilinear, by one grid_sample.

    x [B, C, H, W]; u [B, 4] uniforms (area, log aspect ratio, x and y position); flip [B] bool.
    A crop covers ``scale`` of the image area with aspect ratio in ``ratio``, clipped to the image
    (torchvision retries 10 times instead of clipping). Returns [B, C, size, size].
    """
    b, c, h, w = x.shape
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * h * w
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1])
    crop_w = torch.sqrt(area * aspect).clamp(max=w)  # pixels
    crop_h = torch.sqrt(area / aspect).clamp(max=h)
    centre_x = crop_w / 2 + (w - crop_w) * u[:, 2]
    centre_y = crop_h / 2 + (h - crop_h) * u[:, 3]
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)  # output [-1, 1] coordinates -> input ones
    theta[:, 0, 0] = crop_w / w * torch.where(flip, -1.0, 1.0)
    theta[:, 0, 2] = 2 * centre_x / w - 1
    theta[:, 1, 1] = crop_h / h
    theta[:, 1, 2] = 2 * centre_y / h - 1
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def intensity_jitter(x: torch.Tensor, *, brightness: float, contrast: float, u: torch.Tensor) -> torch.Tensor:
    """ColorJitter's brightness then contrast (fixed order) of every sample; u [B, 2] uniforms.

    No clamping to [0, 1]: MR slices are z-scored, not 8-bit images.
    """
    def factor(strength: float, v: torch.Tensor) -> torch.Tensor:
        lo = max(0.0, 1.0 - strength)
        return (lo + (1.0 + strength - lo) * v).view(-1, 1, 1, 1)

    y = x * factor(brightness, u[:, 0])
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    return (y - mean) * factor(contrast, u[:, 1]) + mean


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, *, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with a sigma per sample; x [B, C, H, W], sigma [B] pixels."""
    b, c, h, w = x.shape
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [B*C, 2r+1]
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, kernel[:, None, :, None], groups=b * c)  # along H
    y = F.conv2d(y, kernel[:, None, None, :], groups=b * c)  # along W
    return y.reshape(b, c, h, w)


def _one_view(x: torch.Tensor, cfg: MultiCropConfig, *, size: int, scale, factor: float, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(x.shape[0], 10, generator=generator).to(device=x.device, dtype=x.dtype)  # all draws of this view
    view = resized_crop(x, size=size, scale=scale, u=u[:, :4], flip=u[:, 4] < cfg.flip_prob)
    jittered = intensity_jitter(view, brightness=cfg.brightness, contrast=cfg.contrast, u=u[:, 5:7])
    view = torch.where((u[:, 7] < cfg.jitter_prob).view(-1, 1, 1, 1), jittered, view)
    lo, hi = cfg.blur_sigma[0] * factor, cfg.blur_sigma[1] * factor
    blurred = gaussian_blur(view, lo + (hi - lo) * u[:, 8], radius=max(1, math.ceil(3 * hi)))
    return torch.where((u[:, 9] < cfg.blur_prob).view(-1, 1, 1, 1), blurred, view)


def multi_crop(x: torch.Tensor, cfg: MultiCropConfig, *, generator: torch.Generator, minimum: int = 1) -> list[torch.Tensor]:
    """x [B, C, H, W] -> n_global views [B, C, g, g] then n_local views [B, C, l, l] (sizes: ``crop_sizes``; ``minimum``:
    the encoder's total stride, the smallest view it reads)."""
    b, c, h, w = x.shape
    if cfg.channel_mode == "single":  # one modality per sample, repeated over the C input channels
        pick = torch.randint(c, (b,), generator=generator).to(x.device)
        x = x[torch.arange(b, device=x.device), pick][:, None].expand(b, c, h, w)
    g, l, factor = crop_sizes(cfg, min(h, w), minimum=minimum)
    views = [_one_view(x, cfg, size=g, scale=cfg.global_crop_scale, factor=factor, generator=generator) for _ in range(cfg.n_global_crops)]
    views += [_one_view(x, cfg, size=l, scale=cfg.local_crop_scale, factor=factor, generator=generator) for _ in range(cfg.n_local_crops)]
    return views


def check_view_sizes(views: list[torch.Tensor], *, minimum: int = 32) -> None:
    """Raise if a view is smaller than the encoder's total stride (``Backbone.bottleneck_stride``; 32: five stride-2 stages)."""
    side = min(v.shape[-1] for v in views)
    if side < minimum:
        raise ValueError(f"multi-crop views of {side} pixels are smaller than the encoder's stride {minimum}; "
                         f"use a larger crop (roi) or larger global_crop_size / local_crop_size")
