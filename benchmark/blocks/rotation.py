"""Rotations by multiples of 90° and cut-out boxes: the corruptions of Tang et al. 2022 (section 3.2;
MONAI research-contributions ``SwinUNETR/Pretrain/utils/ops.py``: ``rot_rand``, ``aug_rand``).

Dimension-generic: x is [B, C, X, Y] or [B, C, X, Y, Z]; rotations are in the (X, Y) plane
(about the z-axis in 3D, in-plane in 2D).
"""
from __future__ import annotations

import torch

ROTATION_PLANE = (2, 3)  # [B, C, X, Y, Z]: the (X, Y) plane, i.e. rotation about the z-axis


# ---- corruptions -------------------------------------------------------------------------------
def rotate_volumes(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate sample i of x [B, C, X, Y, Z] by k[i]·90° in the (X, Y) plane (about the z-axis).

    Tang et al. 3.2 rotate by 0°, 90°, 180° or 270° about the z-axis (the reference ``rot_rand``
    rotates the dims (2, 3) of a [C, H, W, D] sample, i.e. about the first axis; we follow the
    paper, which also keeps non-cubic crops such as the smoke 64x64x32 in shape).
    """
    plane = (ROTATION_PLANE[0] - 1, ROTATION_PLANE[1] - 1)  # the same plane of one sample [C, X, Y, Z]
    return torch.stack([torch.rot90(sample, int(turns), dims=plane) for sample, turns in zip(x, k)])


def random_rotations(x: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(rotated x, labels [B] in {0, 1, 2, 3}): one uniform rotation class per sample."""
    if x.shape[ROTATION_PLANE[0]] != x.shape[ROTATION_PLANE[1]]:
        raise ValueError(f"rotation about the z-axis needs equal X and Y crop sides, got crop {tuple(x.shape[2:])}")
    labels = torch.randint(0, 4, (x.shape[0],), generator=generator)
    return rotate_volumes(x, labels), labels.to(x.device)


def _box(size: int, *, min_frac: float, max_frac: float, generator: torch.Generator) -> slice:
    """One side of a cut-out box: start in [0, size - min), length in [min, max) clipped at the edge."""
    low = max(1, int(min_frac * size))
    high = max(low + 1, int(max_frac * size))
    start = int(torch.randint(0, max(1, size - low), (1,), generator=generator))
    length = int(torch.randint(low, high, (1,), generator=generator))
    return slice(start, min(start + length, size))


def _drop_boxes(sample: torch.Tensor, source: torch.Tensor | None, cfg, generator: torch.Generator) -> torch.Tensor:
    """Reference ``patch_rand_drop``: boxes until their summed volume reaches U(0, max_drop)·N voxels.

    Each box is filled with ``source``'s voxels there, or (source None) with Gaussian noise
    min-max scaled to the sample's intensity range (the reference scales it to [0, 1], the
    range of its CT intensities).
    """
    spatial = sample.shape[1:]
    budget = float(torch.rand((), generator=generator)) * cfg.max_drop * sample[0].numel()
    low, high = sample.amin(), sample.amax()
    out, dropped = sample.clone(), 0
    while dropped < budget:
        box = (slice(None), *(_box(s, min_frac=cfg.min_block, max_frac=cfg.max_block, generator=generator) for s in spatial))
        if source is None:
            noise = torch.randn(out[box].shape, generator=generator).to(out)
            noise = (noise - noise.min()) / (noise.max() - noise.min()).clamp(min=1e-8)
            out[box] = low + noise * (high - low)
        else:
            out[box] = source[box]
        dropped += out[box][0].numel()
    return out


def cutout(x: torch.Tensor, *, cfg, generator: torch.Generator) -> torch.Tensor:
    """Inpainting corruption of x [B, C, *spatial] (reference ``aug_rand``): noise boxes, then
    boxes copied from another sample of the (local) batch drawn at random (none if it draws itself)."""
    out = []
    for i, sample in enumerate(x):
        sample = _drop_boxes(sample, None, cfg, generator)
        other = int(torch.randint(0, len(x), (1,), generator=generator))
        if other != i:
            sample = _drop_boxes(sample, x[other], cfg, generator)
        out.append(sample)
    return torch.stack(out)
