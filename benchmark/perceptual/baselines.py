"""The low-level metrics CoPer Table II compares the perceptual metrics with ("ℓ-1 norm", "SSIM"; LPIPS Table 5's "L2",
"PSNR", "SSIM"), as distances a 2AFC or expert-agreement test reads like a network's: larger = less similar.

* ``l1``: mean |x - y| over channels and pixels;
* ``l2``: mean (x - y)²;
* ``psnr``: 10^(−PSNR / 10) = mean (x - y)² / R², PSNR = 10·log10(R² / mean (x - y)²): a monotone decreasing map of
  PSNR, so it ranks every pair exactly as PSNR does (higher PSNR = closer), but a non-negative distance that the expert
  agreement's normalisation by the maximum (IV.A.4) can read. With one data range R per reference it ranks the two
  images of a triplet as ``l2`` does (LPIPS section 3 notes the same); across references it does not;
* ``ssim``: 1 − SSIM (Wang et al. 2004; MONAI ``SSIMMetric``: Gaussian window 11, σ 1.5, K 0.01 / 0.03), per image.

R, the data range of PSNR and SSIM, is the reference image's max − min (the first argument: a triplet's reference, a
rating pair's real image), per image, so both distorted images of a triplet are measured on the same scale. The
randomly initialised networks of Table II ("random VGG-16", "ResNet-34", "ResNet-50") are ``rand:vgg16_unet`` and
``rand:resnet_unet`` at the paper size (``--resnet-depth 34`` for ResNet-34) of ``benchmark.perceptual.metric``.
"""
from __future__ import annotations

import torch

PIXEL_METRICS = ("l1", "l2", "psnr", "ssim")


def pixel_distance(name: str, reference: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Distance ``name`` (module docstring) between ``reference`` and ``image`` [B, c, H, W] -> [B]."""
    if name not in PIXEL_METRICS:
        raise ValueError(f"unknown pixel metric {name!r}; expected one of {', '.join(PIXEL_METRICS)}")
    if reference.shape != image.shape or reference.dim() != 4:
        raise ValueError(f"{name}: expected two [B, c, H, W] images of one shape, got {tuple(reference.shape)} and {tuple(image.shape)}")
    diff = (image - reference).flatten(1)
    if name == "l1":
        return diff.abs().mean(dim=1)
    mse = diff.pow(2).mean(dim=1)
    if name == "l2":
        return mse
    flat = reference.flatten(1)
    data_range = (flat.amax(dim=1) - flat.amin(dim=1)).clamp_min(1e-8)  # [B]
    if name == "psnr":
        return mse / data_range ** 2  # = 10 ** (-PSNR / 10)
    from monai.metrics import SSIMMetric

    return torch.stack([1 - SSIMMetric(spatial_dims=2, data_range=float(r), reduction="mean")(image[i:i + 1], reference[i:i + 1]).squeeze()
                        for i, r in enumerate(data_range)])


@torch.no_grad()
def pixel_triplet_distances(triplets, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(d0, d1) [T]: the distance ``name`` of every triplet's p0 and p1 to its reference (``twoafc.Triplet``)."""
    triplets = list(triplets)
    ref, p0, p1 = (torch.stack([torch.as_tensor(getattr(t, k)) for t in triplets]).double() for k in ("ref", "p0", "p1"))
    return pixel_distance(name, ref, p0), pixel_distance(name, ref, p1)
