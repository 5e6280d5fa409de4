"""Fine-tuning augmentations on a batch: mixup (Zhang et al. 2018) and CarveMix (Zhang et al. 2023).

Pure torch functions of a batch and a ``torch.Generator`` (same seed, same output), 2D and 3D.
They are the label-mixing baselines of the LADP paper's Table 1. CarveMix's region is built by
the same λ rule that LADP uses for its noise (``benchmark.blocks.carvemix``); no method is imported.
"""
from __future__ import annotations

import torch
from scipy import special

from benchmark.blocks.carvemix import carvemix_regions


def sample_mixup_lambda(n: int, *, alpha: float, generator: torch.Generator) -> torch.Tensor:
    """n draws of λ ~ Beta(α, α) (float64 [n]), by inverting the Beta CDF at uniforms from ``generator``.

    (torch.distributions.Beta cannot take a generator, so the inverse-CDF keeps draws seeded.)
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.from_numpy(special.betaincinv(alpha, alpha, u.numpy())).clamp_(0.0, 1.0)


def mixup(image: torch.Tensor, target: torch.Tensor, *, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup: image_i ← λ_i·image_i + (1−λ_i)·image_π(i), target likewise with the same λ_i.

    image [B, C, *spatial], target [B, K, *spatial] float (one-hot or region channels); one
    λ_i ~ Beta(α, α) per sample, partners π a random permutation of the batch (a sample may be
    paired with itself). Draws λ first, then π.
    """
    if image.shape[0] != target.shape[0] or image.shape[2:] != target.shape[2:]:
        raise ValueError(f"mixup: target {tuple(target.shape)} must be [B, K, *spatial] of image {tuple(image.shape)}")
    if not target.is_floating_point():
        raise ValueError(f"mixup mixes soft targets: target must be float (one-hot / region channels), got {target.dtype}")
    b = image.shape[0]
    lam = sample_mixup_lambda(b, alpha=alpha, generator=generator)  # [B]
    perm = torch.randperm(b, generator=generator).to(image.device)
    shape = (b,) + (1,) * (image.dim() - 1)
    lam_x = lam.to(device=image.device, dtype=image.dtype).view(shape)
    lam_y = lam.to(device=target.device, dtype=target.dtype).view(shape)
    return lam_x * image + (1 - lam_x) * image[perm], lam_y * target + (1 - lam_y) * target[perm]


def carvemix(image: torch.Tensor, label: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """CarveMix: carve the region around a donor's lesion and paste it, image and label, into a recipient.

    image [B, C, *spatial], label [B, 1, *spatial] raw values (> 0 = lesion). Recipient i gets
    donor π(i) (a random permutation; π(i) = i leaves case i unchanged). The region is
    C = [D ≤ λ] around the donor's lesion with λ from CarveMix eq. 3 (``benchmark.blocks.carvemix``);
    inside it image and label come from the donor, outside from the recipient. A donor without
    a lesion pastes nothing. Draws π first, then one λ per donor.
    """
    if label.dim() != image.dim() or label.shape[0] != image.shape[0] or label.shape[1] != 1 or label.shape[2:] != image.shape[2:]:
        raise ValueError(f"carvemix: label {tuple(label.shape)} must be [B, 1, *spatial] of image {tuple(image.shape)}")
    perm = torch.randperm(image.shape[0], generator=generator).to(image.device)
    donor_image, donor_label = image[perm], label[perm]
    region = carvemix_regions(donor_label, generator=generator)  # [B, 1, *spatial] bool, broadcast over image channels
    return torch.where(region, donor_image, image), torch.where(region, donor_label, label)
