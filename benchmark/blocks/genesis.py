"""Models-Genesis-style baseline pretext tasks of the SI paper (Zhang et al., section 4, eqs. 8-11).

Four image corruptions, each a pure function of a [B, C, *spatial] tensor (2 or 3 spatial
dims) and a ``torch.Generator``:

* ``grid_inpaint``        eq. 8:  each cell of a regular grid kept with probability γ, else zeroed;
* ``grid_pixel_shuffle``  eq. 9:  rows / columns (/ slices) of cells selected with probability γ permuted;
* ``grid_centre_value``   eq. 10: every cell replaced by the value at its centre;
* ``bezier_intensity_shift`` eq. 11: a random monotonic cubic Bézier map of min-max normalised intensities.

Grids have the same cell size ``g`` along every spatial dim, anchored at index 0; cells at the
far border are partial when ``g`` does not divide the image size. Cell decisions are drawn
per sample and shared by all channels of that sample. Random numbers are drawn on the
generator's device (CPU in the training loops) and then moved to the data's device.

The shared method (``benchmark.blocks.pretexts.reconstruction.ReconstructionPretext``) feeds the
corrupted image to the network and reconstructs the original with the L1 + L2 loss of eq. 4.
"""
from __future__ import annotations

import math
import torch


# ---- grid helpers -----------------------------------------------------------------------------
def _check_grid_input(x: torch.Tensor, grid_size: int) -> tuple[int, ...]:
    if x.dim() not in (4, 5):
        raise ValueError(f"expected [B, C, H, W] or [B, C, D, H, W], got shape {tuple(x.shape)}")
    if grid_size < 1:
        raise ValueError(f"grid_size must be >= 1, got {grid_size}")
    return tuple(x.shape[2:])


def grid_shape(spatial: tuple[int, ...], grid_size: int) -> tuple[int, ...]:
    """Number of (possibly partial) cells of size ``grid_size`` along each spatial dim."""
    return tuple(math.ceil(s / grid_size) for s in spatial)


def cells_to_voxels(cells: torch.Tensor, *, grid_size: int, spatial: tuple[int, ...]) -> torch.Tensor:
    """[B, *cells] per-cell values -> [B, *spatial] per-voxel values (each cell's value repeated over it)."""
    out = cells
    for d, s in enumerate(spatial):
        out = out.repeat_interleave(grid_size, dim=d + 1).narrow(d + 1, 0, s)
    return out


def _rand(shape: tuple[int, ...], *, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) draws on the generator's device, moved to ``like``'s device."""
    return torch.rand(shape, generator=generator, device=generator.device).to(like.device)


# ---- eq. 8: inpainting ----------------------------------------------------------------------------
def grid_inpaint(
    x: torch.Tensor, *, grid_size: int, keep_prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8: each grid cell kept with probability γ = ``keep_prob`` (Bernoulli), else set to zero.

    x: [B, C, *spatial]. Returns the corrupted image (same shape) and the boolean cell mask
    [B, *grid_shape] (True = kept), one decision per cell and sample shared by all channels.
    """
    spatial = _check_grid_input(x, grid_size)
    keep = _rand((x.shape[0], *grid_shape(spatial, grid_size)), generator=generator, like=x) < keep_prob
    voxels = cells_to_voxels(keep, grid_size=grid_size, spatial=spatial).unsqueeze(1)  # [B, 1, *spatial]
    return x * voxels.to(x.dtype), keep


# ---- eq. 9: local pixel shuffling -----------------------------------------------------------------
def grid_pixel_shuffle(
    x: torch.Tensor, *, grid_size: int, shuffle_prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9: in each cell selected with probability γ, permute its rows and its columns (and slices).

    P g(I) Q generalised to n dims: one random permutation per spatial axis per selected cell
    (drawn independently for every cell and sample, shared by all channels); unselected cells
    are unchanged. A partial border cell of length L < g along an axis is permuted within its
    L positions. Returns the shuffled image and the boolean cell mask [B, *grid_shape]
    (True = selected).
    """
    spatial = _check_grid_input(x, grid_size)
    b, c = x.shape[:2]
    grid = grid_shape(spatial, grid_size)
    k = len(spatial)
    g = grid_size
    selected = _rand((b, *grid), generator=generator, like=x) < shuffle_prob  # [B, *grid]
    scores = _rand((b, *grid, k, g), generator=generator, like=x)  # permutation keys per cell and axis

    # Index arrays for advanced indexing, each broadcastable to [B, *spatial].
    def along(dim: int, values: torch.Tensor) -> torch.Tensor:
        shape = [1] * (k + 1)
        shape[dim] = -1
        return values.view(shape)

    positions = [torch.arange(s, device=x.device) for s in spatial]
    cell_index = [along(d + 1, p // g) for d, p in enumerate(positions)]
    batch_index = along(0, torch.arange(b, device=x.device))
    sel = selected[(batch_index, *cell_index)]  # [B, *spatial]

    source = []  # per axis: the source coordinate of every output voxel, [B, *spatial]
    for d, s in enumerate(spatial):
        # Offsets past the image end (partial last cell) get key 2 > any U(0, 1): they sort last,
        # so the first L entries of the argsort are a uniform permutation of 0..L-1.
        cell_start = torch.arange(grid[d], device=x.device) * g  # [n_d]
        outside = (cell_start.unsqueeze(1) + torch.arange(g, device=x.device)) >= s  # [n_d, g]
        view = [1] * (k + 2)
        view[d + 1], view[-1] = grid[d], g
        keys = scores[..., d, :].masked_fill(outside.view(view), 2.0)  # [B, *grid, g]
        perm = keys.argsort(dim=-1)  # [B, *grid, g]
        offset = along(d + 1, positions[d] % g)
        permuted = cell_index[d] * g + perm[(batch_index, *cell_index, offset)]  # [B, *spatial]
        source.append(torch.where(sel, permuted, along(d + 1, positions[d])))

    flat = torch.zeros_like(source[0])
    for d, s in enumerate(spatial):
        flat = flat * s + source[d]
    index = flat.reshape(b, 1, -1).expand(b, c, -1)  # [B, C, prod(spatial)]
    out = x.reshape(b, c, -1).gather(2, index).reshape(x.shape)
    return out, selected


# ---- eq. 10: super-resolution ---------------------------------------------------------------------
def random_grid_offset(batch: int, *, spatial_dims: int, grid_size: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample grid phase [B, spatial_dims], uniform integers in [0, grid_size), on the generator's device."""
    return torch.randint(0, grid_size, (batch, spatial_dims), generator=generator, device=generator.device)


def grid_centre_value(x: torch.Tensor, *, grid_size: int, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 10: every grid cell takes the value at its centre, index floor(size / 2) inside the cell.

    ``offset`` [B, spatial_dims] (ints in [0, g)) shifts each sample's grid so that cell borders
    lie where (position + offset) % g == 0; None anchors the grid at index 0. Cells cut by the
    image border are partial; a partial cell of length L uses its own centre floor(L / 2).
    """
    spatial = _check_grid_input(x, grid_size)
    b = x.shape[0]
    if offset is None:
        offset = torch.zeros(b, len(spatial), dtype=torch.long)
    offset = offset.to(device=x.device, dtype=torch.long)
    out = x
    for d, s in enumerate(spatial):
        pos = torch.arange(s, device=x.device)  # [S]
        o = offset[:, d : d + 1]  # [B, 1]
        start = ((pos + o) // grid_size) * grid_size - o  # [B, S], may be negative for the first cell
        stop = (start + grid_size).clamp(max=s)
        start = start.clamp(min=0)
        centre = start + (stop - start) // 2  # [B, S]
        shape = [b, 1] + [1] * len(spatial)
        shape[d + 2] = s
        index = centre.view(shape).expand_as(out)  # same source index for every channel and other axis
        out = out.gather(d + 2, index)
    return out


# ---- eq. 11: non-linear intensity shift -----------------------------------------------------------
def minmax_normalise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per sample and channel, over all voxels: (x - min) / (max - min) in [0, 1]; constant channels -> 0."""
    flat = x.flatten(2)
    low = flat.min(dim=2, keepdim=True).values
    high = flat.max(dim=2, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(eps)).reshape(x.shape)


def bezier_control_points(shape: tuple[int, ...], *, generator: torch.Generator) -> torch.Tensor:
    """Random control points [*shape, 4, 2] (x, y): P0 = (0, 0), P3 = (1, 1), P1, P2 ~ U(0, 1)^2.

    The two inner x's are sorted and the two inner y's are sorted, so x(t) and y(t) both have
    non-negative derivatives on [0, 1] and the curve is the graph of a monotonic non-decreasing
    map [0, 1] -> [0, 1] (the monotonicity that section 4.4 states; Models Genesis fixes the
    end-points the same way). Drawn on the generator's device.
    """
    inner = torch.rand((*shape, 2, 2), generator=generator, device=generator.device).sort(dim=-2).values  # [*, 2 pts, (x, y)]
    p0 = torch.zeros((*shape, 1, 2), device=inner.device)
    p3 = torch.ones((*shape, 1, 2), device=inner.device)
    return torch.cat([p0, inner, p3], dim=-2)


def bezier_curve(points: torch.Tensor, *, samples: int = 1001) -> tuple[torch.Tensor, torch.Tensor]:
    """Cubic Bézier (Bernstein form) at ``samples`` values of t in [0, 1]: xs, ys [*, samples].

    Eq. 11 writes (1 - v^3) and 3v(1 - v^2); those are typos of the Bernstein polynomials
    (1 - t)^3 and 3t(1 - t)^2, used here.
    """
    t = torch.linspace(0.0, 1.0, samples, device=points.device, dtype=points.dtype)
    basis = torch.stack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3], dim=0)  # [4, samples]
    curve = torch.einsum("...pk,ps->...ks", points, basis)  # [*, 2, samples]
    # The curve is monotonic in exact arithmetic; cummax removes float round-off reversals.
    xs = curve[..., 0, :].cummax(dim=-1).values.contiguous()
    ys = curve[..., 1, :].cummax(dim=-1).values.contiguous()
    return xs, ys


def interpolate_monotone(values: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear y(v) through (xs, ys) for values in [0, 1] (torch's ``np.interp``, batched).

    values [R, N], xs / ys [R, K] with xs non-decreasing from 0 to 1.
    """
    k = xs.shape[-1]
    right = torch.searchsorted(xs, values.contiguous(), right=True).clamp(1, k - 1)
    x0, x1 = xs.gather(-1, right - 1), xs.gather(-1, right)
    y0, y1 = ys.gather(-1, right - 1), ys.gather(-1, right)
    w = ((values - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return y0 + w * (y1 - y0)


def bezier_intensity_shift(
    x: torch.Tensor, *, generator: torch.Generator, samples: int = 1001
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 11: min-max normalise (per sample and channel), then map every voxel through a random Bézier curve.

    One curve per sample and channel (each MR sequence gets its own intensity remapping), drawn
    fresh at every call. Returns (shifted, normalised), both [B, C, *spatial] in [0, 1]; the
    network reconstructs ``normalised`` from ``shifted``.
    """
    if x.dim() not in (4, 5):
        raise ValueError(f"expected [B, C, H, W] or [B, C, D, H, W], got shape {tuple(x.shape)}")
    b, c = x.shape[:2]
    normalised = minmax_normalise(x)
    points = bezier_control_points((b, c), generator=generator).to(device=x.device, dtype=torch.float32)
    xs, ys = bezier_curve(points.reshape(b * c, 4, 2), samples=samples)  # [B*C, K]
    shifted = interpolate_monotone(normalised.reshape(b * c, -1).float(), xs, ys)
    return shifted.reshape(x.shape).to(x.dtype), normalised
