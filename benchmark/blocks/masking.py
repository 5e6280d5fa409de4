"""Masks over tokens and voxels (MAE / SimMIM token masking, DAE local masking, CSM cross-series masking).

Every random draw comes from the ``torch.Generator`` passed in (drawn on the CPU, then moved to
the data's device), so the same seed gives the same mask.
"""
from __future__ import annotations

import math

import torch


def random_token_masks(batch: int, num_tokens: int, *, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """MAE random masking: exactly round(ratio·L) of the L tokens of each sample, drawn independently. [B, L] bool, True = hidden."""
    k = int(round(ratio * num_tokens))
    if not 0 < k < num_tokens:
        raise ValueError(f"mask ratio {ratio} leaves no masked or no visible token among {num_tokens}")
    scores = torch.rand(batch, num_tokens, generator=generator)
    return scores.argsort(dim=1).argsort(dim=1) < k


def token_mask(batch: int, grid: tuple[int, ...], *, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Exactly round(ratio·N) of the N = prod(grid) tokens of each sample, drawn independently: bool [B, *grid], True = masked."""
    return random_token_masks(batch, math.prod(grid), ratio=ratio, generator=generator).reshape(batch, *grid)


def mask_block_size(crop: tuple[int, ...], patch: tuple[int, ...], *, block: int, reference_crop: int) -> tuple[int, ...]:
    """SimMIM mask-block side per axis, in voxels, for a crop of ``crop`` voxels and model patches of ``patch``.

    ``block`` voxels at a ``reference_crop`` side (16 at the DAE paper's 96, the authors' ``mask_patch_size``)
    scaled with the crop: per axis the target is block·crop/reference_crop, and the side actually used is the
    multiple of the patch that divides the crop and is nearest to that target (ties -> the smaller), so the
    block grid tiles the crop exactly and every block is a whole number of tokens, as SimMIM's
    ``MaskGenerator`` asserts. 96³, patch 2 -> 16³; the smoke crop 64x64x32 -> 8x8x4 (Swin, patch 2) and
    8x8x8 (ViT, patch 8).
    """
    sides = []
    for c, p in zip(crop, patch):
        if c % p:
            raise ValueError(f"crop side {c} is not a multiple of the patch size {p}")
        target = block * c / reference_crop
        options = [m for m in range(p, c + 1, p) if c % m == 0]
        sides.append(min(options, key=lambda m: (abs(m - target), m)))
    return tuple(sides)


def block_token_mask(batch: int, grid: tuple[int, ...], block_tokens: tuple[int, ...], *, ratio: float,
                     generator: torch.Generator) -> torch.Tensor:
    """SimMIM masking: exactly round(ratio·M) of the M blocks of ``block_tokens`` tokens each, per sample.

    grid: the token grid; each side a multiple of the block side in tokens. Returns bool [B, *grid],
    True = masked; every masked token belongs to a fully masked block.
    """
    if any(g % b for g, b in zip(grid, block_tokens)):
        raise ValueError(f"token grid {grid} is not tiled by blocks of {block_tokens} tokens")
    blocks = token_mask(batch, tuple(g // b for g, b in zip(grid, block_tokens)), ratio=ratio, generator=generator)
    for dim, b in enumerate(block_tokens, start=1):
        blocks = blocks.repeat_interleave(b, dim=dim)
    return blocks


def voxel_mask(tokens: torch.Tensor, patch: tuple[int, ...]) -> torch.Tensor:
    """Token mask [B, *grid] -> voxel mask [B, 1, *(grid·patch)]: each token covers a patch of voxels (block mask)."""
    out = tokens
    for dim, p in enumerate(patch, start=1):
        out = out.repeat_interleave(p, dim=dim)
    return out[:, None]


def local_channel_mask(tokens: torch.Tensor, *, ratio: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """DAE local masking: zero exactly round(r·C) of the C embedding channels of EVERY token.

    tokens: [B, C, *spatial] (one token per spatial position). Each token gets its own random
    channel subset, so no token is wholly masked (unlike MAE token masking). Returns the
    masked tokens and the boolean mask (True = zeroed), same shape as ``tokens``.
    """
    channels = tokens.shape[1]
    k = int(round(ratio * channels))
    scores = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # rank of each channel within its token
    mask = ranks < k
    return tokens.masked_fill(mask, 0.0), mask


def cross_series_masks(
    batch: int,
    num_series: int,
    num_patches: int,
    *,
    ratio: float,
    generator: torch.Generator,
    same_position_masks: bool = False,
    series_masking: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CSM masks (CSM paper III.B) for one batch. Returns (mask [B, S, N] bool, True = hidden; masked_series [B, S] bool).

    Intra-series: exactly round(ratio·N) patches of every series, drawn independently per series
    (``same_position_masks``: one draw per sample shared by all its series, ablation IV.C).
    Inter-series: k ~ U{1, ..., S−1} whole series per sample, fully hidden
    (``series_masking=False``: k = 0, ablation IV.C; then a single series is allowed).
    """
    if series_masking and num_series < 2:
        raise ValueError(f"cross-series masking needs at least 2 series, got {num_series}")
    if num_series < 1:
        raise ValueError(f"need at least 1 series, got {num_series}")
    k_patches = int(round(ratio * num_patches))
    if not 0 < k_patches < num_patches:
        raise ValueError(f"mask ratio {ratio} leaves no masked or no visible patch among {num_patches}")
    # The default path draws from the generator exactly as before (same seed -> same masks).
    scores = torch.rand(batch, 1 if same_position_masks else num_series, num_patches, generator=generator)
    mask = (scores.argsort(dim=2).argsort(dim=2) < k_patches).expand(batch, num_series, num_patches)
    if not series_masking:
        return mask.contiguous(), torch.zeros(batch, num_series, dtype=torch.bool)
    k_series = torch.randint(1, num_series, (batch, 1), generator=generator)  # k in [1, S-1]
    series_rank = torch.rand(batch, num_series, generator=generator).argsort(dim=1).argsort(dim=1)
    masked_series = series_rank < k_series
    return mask | masked_series.unsqueeze(-1), masked_series


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """x [B, S, D, H, W] -> [B, S, N, patch³] in the same token order as the ViT's Conv3d tokeniser."""
    b, s, d, h, w = x.shape
    x = x.reshape(b, s, d // patch, patch, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 2, 4, 6, 3, 5, 7)
    return x.reshape(b, s, (d // patch) * (h // patch) * (w // patch), patch**3)


def gather_visible(tokens: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack the visible tokens of each sample to the front of a padded batch.

    tokens [B, L, dim], visible [B, L] bool -> (packed [B, Lmax, dim], order [B, L] (the permutation
    used), valid [B, Lmax] bool). Samples differ in visible count because k varies per sample.
    """
    order = torch.argsort((~visible).to(torch.int8), dim=1, stable=True)  # visible first, original order kept
    counts = visible.sum(dim=1)
    lmax = int(counts.max())
    packed = torch.gather(tokens, 1, order[:, :lmax, None].expand(-1, -1, tokens.shape[-1]))
    valid = torch.arange(lmax, device=tokens.device)[None] < counts[:, None]
    return packed, order, valid
