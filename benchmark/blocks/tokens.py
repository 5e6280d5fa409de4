"""Token-grid helpers shared by the ViT backbones and the methods that feed them crops of another size."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def grid_position_embedding(pos: torch.Tensor, *, grid: tuple[int, ...], to: tuple[int, ...]) -> torch.Tensor:
    """A learned position embedding for another token grid: pos [..., N, C] laid out on ``grid`` (N = prod(grid))
    -> [..., prod(to), C], interpolated (trilinear in 3D, bilinear in 2D).

    DINO feeds its ViT local crops smaller than the global ones and interpolates the position embedding to their
    grid (Caron et al. 2021, ``interpolate_pos_encoding``: bicubic in 2D; trilinear is the 3D interpolation
    ``F.interpolate`` offers). ``to == grid`` returns ``pos`` itself, so the usual path is unchanged bit for bit.
    """
    grid, to = tuple(int(g) for g in grid), tuple(int(t) for t in to)
    if to == grid:
        return pos
    if len(to) != len(grid) or len(grid) not in (2, 3):
        raise ValueError(f"grid_position_embedding: grids {grid} and {to} must both be 2D or both 3D")
    if pos.shape[-2] != math.prod(grid):
        raise ValueError(f"grid_position_embedding: {pos.shape[-2]} embeddings do not fill the grid {grid}")
    lead, channels = pos.shape[:-2], pos.shape[-1]
    maps = pos.reshape(-1, *grid, channels).movedim(-1, 1)  # [L, C, *grid]
    maps = F.interpolate(maps, size=to, mode="trilinear" if len(grid) == 3 else "bilinear", align_corners=False)
    return maps.movedim(1, -1).reshape(*lead, math.prod(to), channels)


def resized_series_embedding(old: torch.Tensor, channels: int, *, inflate: bool, network: str) -> torch.Tensor:
    """A series embedding [1, S, 1, dim] for ``channels`` series. ``inflate`` (pretrained on one series, DAE): every
    series gets the pretrained embedding; otherwise the first min(S, channels) are kept and the rest drawn anew
    (truncated normal, std 0.02, as at construction). ``network`` names the model in the error."""
    if inflate:
        if old.shape[1] != 1:
            raise ValueError(f"inflate widens a one-series {network}, this one has {old.shape[1]} series")
        return old.repeat(1, channels, 1, 1).clone()
    new = torch.zeros(1, channels, 1, old.shape[-1])
    torch.nn.init.trunc_normal_(new, std=0.02)
    keep = min(channels, old.shape[1])
    new[:, :keep] = old[:, :keep]
    return new
