"""Models-Genesis-style SI baselines (benchmark/blocks/genesis.py, benchmark/blocks/pretexts/reconstruction.py and the four method files)."""
from __future__ import annotations

import math

import pytest
import torch

import benchmark.methods.inpainting  # noqa: F401  (registration)
import benchmark.methods.intensity_shift  # noqa: F401
import benchmark.methods.pixel_shuffle  # noqa: F401
import benchmark.methods.super_resolution  # noqa: F401
from benchmark.backbones import BackboneSize, build_backbone
from benchmark.methods.base import get_method
from benchmark.blocks.losses import l1_plus_l2
from benchmark.blocks.pretexts.reconstruction import ReconstructionPretext
from benchmark.methods.csi import CrossPatientSI
from benchmark.blocks.genesis import (
    bezier_control_points,
    bezier_curve,
    bezier_intensity_shift,
    cells_to_voxels,
    grid_centre_value,
    grid_inpaint,
    grid_pixel_shuffle,
    grid_shape,
    random_grid_offset,
    interpolate_monotone,
    minmax_normalise,
)
from benchmark.methods.inpainting import Inpainting, InpaintingConfig
from benchmark.methods.intensity_shift import IntensityShift, IntensityShiftConfig
from benchmark.methods.pixel_shuffle import PixelShuffle, PixelShuffleConfig
from benchmark.methods.super_resolution import SuperResolution, SuperResolutionConfig

SHAPES = {2: (3, 2, 20, 18), 3: (2, 2, 10, 12, 9)}  # sizes not divisible by the grid: partial border cells


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(dims: int, seed: int = 100) -> torch.Tensor:
    """Random input with no zeros (so zeroed cells are recognisable) and distinct values."""
    return torch.rand(SHAPES[dims], generator=_gen(seed)) + 0.5


def _cells(x: torch.Tensor, g: int):
    """Yield (b, slices) for every (possibly partial) grid cell of x [B, C, *spatial]."""
    spatial = x.shape[2:]
    grid = grid_shape(tuple(spatial), g)
    for b in range(x.shape[0]):
        for idx in torch.cartesian_prod(*[torch.arange(n) for n in grid]).reshape(-1, len(grid)).tolist():
            yield b, idx, tuple(slice(i * g, min((i + 1) * g, s)) for i, s in zip(idx, spatial))


# ---- helpers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [2, 3])
def test_cells_to_voxels_repeats_each_cell_and_crops(dims):
    """Every voxel carries the value of the cell it lies in; partial border cells are cropped."""
    spatial = SHAPES[dims][2:]
    grid = grid_shape(spatial, 4)
    assert grid == tuple(math.ceil(s / 4) for s in spatial)
    cells = torch.arange(2 * math.prod(grid)).reshape(2, *grid)
    voxels = cells_to_voxels(cells, grid_size=4, spatial=spatial)
    assert voxels.shape == (2, *spatial)
    x = torch.zeros(2, 1, *spatial)
    for b, idx, sl in _cells(x, 4):
        assert (voxels[(b, *sl)] == cells[(b, *idx)]).all()


# ---- eq. 8: inpainting ----------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("g", [3, 4])
def test_inpaint_cells_all_kept_or_all_zero_and_match_mask(dims, g):
    """Each grid-aligned cell is either the input exactly (all channels) or exactly zero, as its mask says."""
    x = _image(dims)
    out, keep = grid_inpaint(x, grid_size=g, keep_prob=0.5, generator=_gen(1))
    assert out.shape == x.shape
    assert keep.shape == (x.shape[0], *grid_shape(tuple(x.shape[2:]), g))
    for b, idx, sl in _cells(x, g):
        cell_out, cell_in = out[(b, slice(None), *sl)], x[(b, slice(None), *sl)]
        if keep[(b, *idx)]:
            assert torch.equal(cell_out, cell_in)
        else:
            assert (cell_out == 0).all()
    assert keep.any() and (~keep).any()


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("gamma", [0.2, 0.5, 0.9])
def test_inpaint_keeps_gamma_of_cells(dims, gamma):
    """Over many cells the kept fraction is γ within 4 binomial standard deviations (eq. 8, B(γ))."""
    shape = (16, 1, 64, 64) if dims == 2 else (8, 1, 32, 32, 32)
    x = torch.ones(shape)
    out, keep = grid_inpaint(x, grid_size=2, keep_prob=gamma, generator=_gen(2))
    n = keep.numel()
    assert n >= 16_000
    assert abs(keep.float().mean().item() - gamma) < 4 * math.sqrt(gamma * (1 - gamma) / n)
    assert abs(out.mean().item() - gamma) < 4 * math.sqrt(gamma * (1 - gamma) / n)  # voxels follow their cells


def test_inpaint_decision_shared_across_channels_independent_across_samples():
    """All channels of a sample are masked alike; different samples get different masks."""
    x = torch.ones(4, 3, 32, 32)
    out, _ = grid_inpaint(x, grid_size=4, keep_prob=0.5, generator=_gen(3))
    assert (out == out[:, :1]).all()
    assert not torch.equal(out[0], out[1])


@pytest.mark.parametrize("dims", [2, 3])
def test_inpaint_extremes(dims):
    """γ = 1 keeps the image, γ = 0 zeroes it."""
    x = _image(dims)
    assert torch.equal(grid_inpaint(x, grid_size=4, keep_prob=1.0, generator=_gen())[0], x)
    assert (grid_inpaint(x, grid_size=4, keep_prob=0.0, generator=_gen())[0] == 0).all()


# ---- eq. 9: pixel shuffle -------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("g", [3, 4])
def test_pixel_shuffle_selected_cells_are_permutations_unselected_identical(dims, g):
    """Selected cells keep their multiset of values per channel and some change; others are untouched."""
    x = _image(dims)
    out, selected = grid_pixel_shuffle(x, grid_size=g, shuffle_prob=0.5, generator=_gen(4))
    assert out.shape == x.shape
    changed = 0
    for b, idx, sl in _cells(x, g):
        cell_out, cell_in = out[(b, slice(None), *sl)], x[(b, slice(None), *sl)]
        if selected[(b, *idx)]:
            flat_out, flat_in = cell_out.flatten(1), cell_in.flatten(1)
            assert torch.equal(flat_out.sort(dim=1).values, flat_in.sort(dim=1).values)
            changed += not torch.equal(cell_out, cell_in)
        else:
            assert torch.equal(cell_out, cell_in)
    assert selected.any() and (~selected).any()
    assert changed >= 0.5 * int(selected.sum())


@pytest.mark.parametrize("dims", [2, 3])
def test_pixel_shuffle_permutes_whole_rows_and_columns_same_for_all_channels(dims):
    """P g Q: the shuffled cell equals the original with its axes' indices permuted (one permutation per axis).

    With x[..., i, j(, k)] = 100 i + 10 j (+ k), each coordinate can be read back from the
    value, so the output must be a product of per-axis permutations, identical in every channel.
    """
    g = 4
    spatial = SHAPES[dims][2:]
    coords = torch.meshgrid(*[torch.arange(s) for s in spatial], indexing="ij")
    code = sum(c * 1000**(dims - 1 - d) for d, c in enumerate(coords)).double()  # unique per voxel
    x = torch.stack([code, code + 0.5]).unsqueeze(0).repeat(2, 1, *[1] * dims)  # [2, 2, *spatial]
    out, selected = grid_pixel_shuffle(x, grid_size=g, shuffle_prob=1.0, generator=_gen(5))
    assert selected.all()
    assert torch.equal(out[:, 1], out[:, 0] + 0.5)  # same permutation in both channels
    for b, _, sl in _cells(x, g):
        cell = out[(b, 0, *sl)].long()
        src = [(cell // 1000**(dims - 1 - d)) % 1000 for d in range(dims)]  # source coordinate per axis
        for d in range(dims):
            # The source coordinate along axis d depends only on the position along axis d ...
            first = src[d].movedim(d, 0).flatten(1)
            assert (first == first[:, :1]).all()
            # ... and is a permutation of the cell's own positions along d.
            assert sorted(first[:, 0].tolist()) == list(range(sl[d].start, sl[d].stop))


@pytest.mark.parametrize("dims", [2, 3])
def test_pixel_shuffle_gamma_zero_is_identity_and_fraction_is_gamma(dims):
    """γ = 0 returns the input; the selected-cell fraction is γ within 4 binomial std."""
    x = _image(dims)
    out, selected = grid_pixel_shuffle(x, grid_size=4, shuffle_prob=0.0, generator=_gen(6))
    assert torch.equal(out, x) and not selected.any()
    shape = (16, 1, 64, 64) if dims == 2 else (8, 1, 32, 32, 32)
    _, selected = grid_pixel_shuffle(torch.zeros(shape), grid_size=2, shuffle_prob=0.3, generator=_gen(7))
    n = selected.numel()
    assert abs(selected.float().mean().item() - 0.3) < 4 * math.sqrt(0.21 / n)


# ---- eq. 10: super-resolution ---------------------------------------------------------------------
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("g", [2, 3, 4, 5])
def test_centre_value_cells_constant_and_equal_centre(dims, g):
    """Every cell is constant (per channel) and equals the input at index floor(size / 2) inside it."""
    x = _image(dims)
    out = grid_centre_value(x, grid_size=g)
    assert out.shape == x.shape
    for b, _, sl in _cells(x, g):
        centre = tuple(s.start + (s.stop - s.start) // 2 for s in sl)
        expected = x[(b, slice(None), *centre)]  # [C]
        cell = out[(b, slice(None), *sl)]
        assert torch.equal(cell, expected.view(-1, *[1] * dims).expand_as(cell))


def test_centre_value_hand_computed_with_partial_cell():
    """Row 0..6 with g = 4: cell [0, 4) takes x[2]; the partial cell [4, 7) of length 3 takes its own centre x[5]."""
    x = torch.arange(7.0).view(1, 1, 1, 7)
    assert grid_centre_value(x, grid_size=4).flatten().tolist() == [2, 2, 2, 2, 5, 5, 5]
    x = torch.arange(8.0).view(1, 1, 8, 1, 1)  # 3D, even cell size 4: index 4 // 2 = 2 inside the cell
    assert grid_centre_value(x, grid_size=4).flatten().tolist() == [2, 2, 2, 2, 6, 6, 6, 6]


def _shifted_cells(size: int, g: int, offset: int) -> list[tuple[int, int]]:
    """[start, stop) of the cells along one axis when borders lie where (p + offset) % g == 0."""
    borders = [0] + [p for p in range(1, size) if (p + offset) % g == 0] + [size]
    return list(zip(borders[:-1], borders[1:]))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("g", [3, 4])
def test_centre_value_with_random_offset_follows_shifted_grid(dims, g):
    """With a per-sample grid offset, every shifted cell is constant and equals its own centre value."""
    x = _image(dims)
    offset = random_grid_offset(x.shape[0], spatial_dims=dims, grid_size=g, generator=_gen(20))
    assert offset.shape == (x.shape[0], dims) and (offset >= 0).all() and (offset < g).all()
    offset[0] = torch.arange(dims) % g + 1  # make sure some offsets are non-zero
    out = grid_centre_value(x, grid_size=g, offset=offset)
    for b in range(x.shape[0]):
        axes = [_shifted_cells(s, g, int(o)) for s, o in zip(x.shape[2:], offset[b])]
        for cell in torch.cartesian_prod(*[torch.arange(len(a)) for a in axes]).reshape(-1, dims).tolist():
            sl = tuple(slice(*axes[d][i]) for d, i in enumerate(cell))
            centre = tuple(s.start + (s.stop - s.start) // 2 for s in sl)
            block = out[(b, slice(None), *sl)]
            assert torch.equal(block, x[(b, slice(None), *centre)].view(-1, *[1] * dims).expand_as(block))
    zero = torch.zeros_like(offset)
    assert torch.equal(grid_centre_value(x, grid_size=g, offset=zero), grid_centre_value(x, grid_size=g))
    assert not torch.equal(out, grid_centre_value(x, grid_size=g))


def test_centre_value_grid_one_is_identity_and_grid_matters():
    """g = 1 is the identity; different grid sizes give different images."""
    x = _image(2)
    assert torch.equal(grid_centre_value(x, grid_size=1), x)
    assert not torch.equal(grid_centre_value(x, grid_size=2), grid_centre_value(x, grid_size=4))


# ---- eq. 11: Bézier intensity shift ---------------------------------------------------------------
def test_control_points_fixed_endpoints_sorted_inner_points():
    """P0 = (0, 0), P3 = (1, 1); inner x's and y's in [0, 1] and non-decreasing."""
    p = bezier_control_points((50, 3), generator=_gen(8))
    assert p.shape == (50, 3, 4, 2)
    assert (p[..., 0, :] == 0).all() and (p[..., 3, :] == 1).all()
    assert (p[..., 1:3, :] >= 0).all() and (p[..., 1:3, :] <= 1).all()
    assert (p[..., 2, :] >= p[..., 1, :]).all()


def test_bezier_curve_matches_bernstein_form():
    """The sampled curve is the cubic Bernstein polynomial of the control points."""
    p = torch.tensor([[0.0, 0.0], [0.2, 0.7], [0.6, 0.9], [1.0, 1.0]])
    xs, ys = bezier_curve(p, samples=5)
    t = torch.linspace(0, 1, 5)
    bern = lambda a, b, c, d: (1 - t) ** 3 * a + 3 * t * (1 - t) ** 2 * b + 3 * t**2 * (1 - t) * c + t**3 * d  # noqa: E731
    torch.testing.assert_close(xs, bern(0.0, 0.2, 0.6, 1.0))
    torch.testing.assert_close(ys, bern(0.0, 0.7, 0.9, 1.0))


def test_interpolate_monotone_matches_linear_interpolation():
    """Piecewise-linear interpolation through the sample points (np.interp semantics)."""
    xs = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    ys = torch.tensor([[0.0, 0.5, 0.6, 1.0]])
    v = torch.tensor([[0.0, 0.125, 0.25, 0.375, 0.75, 1.0]])
    torch.testing.assert_close(interpolate_monotone(v, xs, ys), torch.tensor([[0.0, 0.25, 0.5, 0.55, 0.8, 1.0]]))


@pytest.mark.parametrize("dims", [2, 3])
def test_intensity_shift_monotone_endpoint_preserving_in_unit_interval(dims):
    """Per sample and channel: the map is non-decreasing, 0 -> 0, 1 -> 1, and the output lies in [0, 1]."""
    x = torch.randn(SHAPES[dims], generator=_gen(9)) * 50 + 200  # arbitrary intensity range
    shifted, normalised = bezier_intensity_shift(x, generator=_gen(10))
    assert shifted.shape == x.shape and normalised.shape == x.shape
    assert (shifted >= 0).all() and (shifted <= 1).all()
    torch.testing.assert_close(normalised, minmax_normalise(x))
    n_flat, s_flat = normalised.flatten(2), shifted.flatten(2)
    torch.testing.assert_close(n_flat.amin(2), torch.zeros(n_flat.shape[:2]))
    torch.testing.assert_close(n_flat.amax(2), torch.ones(n_flat.shape[:2]))
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            order = n_flat[b, c].argsort()
            mapped = s_flat[b, c][order]
            assert (mapped[1:] >= mapped[:-1] - 1e-6).all()  # monotone non-decreasing
            assert abs(mapped[0].item()) < 1e-6 and abs(mapped[-1].item() - 1) < 1e-6  # 0 -> 0, 1 -> 1
    assert not torch.allclose(shifted, normalised, atol=1e-3)  # it is not the identity


def test_intensity_shift_on_a_ramp_is_monotone_map():
    """On a dense ramp 0..1 the mapped values trace a monotone curve from 0 to 1, one per channel."""
    ramp = torch.linspace(0, 1, 4096).view(1, 1, 64, 64).repeat(2, 2, 1, 1)
    shifted, _ = bezier_intensity_shift(ramp, generator=_gen(11))
    flat = shifted.flatten(2)
    assert (flat[..., 1:] >= flat[..., :-1] - 1e-6).all()
    torch.testing.assert_close(flat[..., 0], torch.zeros(2, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat[..., -1], torch.ones(2, 2), atol=1e-6, rtol=0)
    curves = flat.reshape(4, -1)
    assert all(not torch.allclose(curves[i], curves[j]) for i in range(4) for j in range(i + 1, 4))


def test_intensity_shift_different_seeds_different_curves():
    """Different generator seeds draw different curves."""
    ramp = torch.linspace(0, 1, 1024).view(1, 1, 32, 32)
    a, _ = bezier_intensity_shift(ramp, generator=_gen(12))
    b, _ = bezier_intensity_shift(ramp, generator=_gen(13))
    assert not torch.allclose(a, b, atol=1e-3)


def test_minmax_normalise_constant_channel_is_zero():
    """A constant channel does not divide by zero."""
    x = torch.full((1, 1, 4, 4), 3.0)
    assert (minmax_normalise(x) == 0).all()


# ---- determinism and hyperparameters --------------------------------------------------------------
CORRUPTIONS = {
    "inpaint": lambda x, g, gen: grid_inpaint(x, grid_size=g, keep_prob=0.5, generator=gen)[0],
    "shuffle": lambda x, g, gen: grid_pixel_shuffle(x, grid_size=g, shuffle_prob=0.5, generator=gen)[0],
    "centre": lambda x, g, gen: grid_centre_value(x, grid_size=g),
    "centre_offset": lambda x, g, gen: grid_centre_value(
        x, grid_size=g, offset=random_grid_offset(x.shape[0], spatial_dims=x.dim() - 2, grid_size=g, generator=gen)
    ),
    "bezier": lambda x, g, gen: bezier_intensity_shift(x, generator=gen)[0],
}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_same_seed_same_output(dims, name):
    """The same generator seed gives identical output; the global RNG does not matter."""
    x = _image(dims)
    torch.manual_seed(0)
    a = CORRUPTIONS[name](x, 4, _gen(14))
    torch.manual_seed(1)
    b = CORRUPTIONS[name](x, 4, _gen(14))
    assert torch.equal(a, b)
    if name != "centre":  # deterministic corruption
        assert not torch.equal(a, CORRUPTIONS[name](x, 4, _gen(15)))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", ["inpaint", "shuffle", "centre", "centre_offset"])
def test_grid_size_changes_output(dims, name):
    """The grid size is used: 2 and 4 give different outputs from the same seed."""
    x = _image(dims)
    assert not torch.equal(CORRUPTIONS[name](x, 2, _gen(16)), CORRUPTIONS[name](x, 4, _gen(16)))


# ---- configs --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cfg_cls,kwargs",
    [
        (InpaintingConfig, {"grid_size": 0}),
        (InpaintingConfig, {"keep_prob": 1.5}),
        (InpaintingConfig, {"keep_prob": -0.1}),
        (PixelShuffleConfig, {"grid_size": 2.5}),
        (PixelShuffleConfig, {"shuffle_prob": 2.0}),
        (SuperResolutionConfig, {"grid_size": 0}),
        (SuperResolutionConfig, {"grid_size": True}),
        (IntensityShiftConfig, {"curve_samples": 1}),
    ],
)
def test_configs_reject_invalid_values(cfg_cls, kwargs):
    """Out-of-range hyperparameters are rejected with the field's name in the message."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cfg_cls(**kwargs)


class _RecordingTrial:
    """Optuna-like trial: records every declared distribution and returns its ``pick`` end (min or max)."""

    def __init__(self, pick: str) -> None:
        self.pick, self.declared = pick, {}

    def suggest_categorical(self, name, choices):
        self.declared[name] = ("categorical", tuple(choices))
        return choices[0] if self.pick == "min" else choices[-1]

    def suggest_int(self, name, low, high, step=1, log=False):
        self.declared[name] = ("int", low, high, step)
        return low if self.pick == "min" else high

    def suggest_float(self, name, low, high, step=None, log=False):
        self.declared[name] = ("float", low, high, step)
        return low if self.pick == "min" else high


@pytest.mark.parametrize("name", ["inpainting", "pixel_shuffle", "super_resolution", "intensity_shift"])
def test_search_spaces_cover_section_5_3(name):
    """Grid size: powers of two 2..64; inpainting also masking 0..100%; intensity shift has only the proxy-task
    batch size that SI 5.5.1 tuned for every experiment (1..4, a pretraining Recipe key, not a Config field)."""
    from search_spaces import get_space

    space = get_space(name)
    results = {}
    for pick in ("min", "max"):
        trial = _RecordingTrial(pick)
        results[pick] = space(trial)
        get_method(name).make_config({k: v for k, v in results[pick].items() if not k.startswith("pretrain_")})  # valid configs
    assert trial.declared["pretrain_batch_size"][1:3] == (1, 4)
    if name == "intensity_shift":
        assert set(trial.declared) == {"pretrain_batch_size"}
        return
    assert trial.declared["grid_size"] == ("categorical", (2, 4, 8, 16, 32, 64))
    assert {results["min"]["grid_size"], results["max"]["grid_size"]} == {2, 64}
    if name == "inpainting":
        kind, low, high, _ = trial.declared["masking_percentage"]
        assert (low, high) == (0, 100)
        assert results["min"]["keep_prob"] == 1.0 and results["max"]["keep_prob"] == 0.0  # γ = 1 - masked fraction
    else:
        assert set(trial.declared) == {"grid_size", "pretrain_batch_size"}


# ---- the methods ----------------------------------------------------------------------------------
METHODS = {
    "inpainting": (Inpainting, lambda x, gen: (grid_inpaint(x, grid_size=8, keep_prob=0.5, generator=gen)[0], x)),
    "pixel_shuffle": (PixelShuffle, lambda x, gen: (grid_pixel_shuffle(x, grid_size=8, shuffle_prob=0.5, generator=gen)[0], x)),
    "super_resolution": (
        SuperResolution,
        lambda x, gen: (grid_centre_value(x, grid_size=4, offset=random_grid_offset(x.shape[0], spatial_dims=2, grid_size=4, generator=gen)), x),
    ),
    "intensity_shift": (IntensityShift, lambda x, gen: bezier_intensity_shift(x, generator=gen)),
}
TINY = BackboneSize(unet_features=(8, 16, 32, 64, 64, 8))


def _method(cls, cfg, c=2):
    torch.manual_seed(0)
    backbone = build_backbone("unet2d", in_channels=c, out_channels=c, size=TINY, roi=(32, 32))
    return cls(backbone, cfg, in_channels=c)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_registered_with_si_paper_settings(name):
    """Registered by name; unet2d default, 2D and 3D backbones; whole network transfers; CSI's recipe."""
    cls = get_method(name)
    assert cls is METHODS[name][0] and issubclass(cls, ReconstructionPretext)
    assert cls.default_backbone == "unet2d" and set(cls.supported_backbones) == {"unet2d", "vgg_unet", "vgg16_unet", "resnet_unet", "swin_unetr", "vit", "unetr"}
    assert cls.transfer == "all" and cls.replace_input_on_transfer and cls.paper == "source_identification"
    assert cls.paper_recipe == CrossPatientSI.paper_recipe
    assert cls.backbone_channels(cls.make_config(), in_channels=3) == (3, 3)
    assert cls.data_spec(cls.make_config()).kind == "crops"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_forward_loss_is_l1_plus_l2_of_reconstruction(name):
    """loss == l1_plus_l2(backbone(corrupted), target), recomputed by hand with the same seed."""
    cls, corrupt = METHODS[name]
    method = _method(cls, cls.make_config())
    x = torch.randn(2, 2, 32, 32, generator=_gen(17))
    out = method({"image": x}, generator=_gen(18))
    loss = out["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
    corrupted, target = corrupt(x, _gen(18))
    assert not torch.equal(corrupted, target)
    with torch.no_grad():
        expected = l1_plus_l2(method.backbone(corrupted), target)
    torch.testing.assert_close(loss.detach(), expected)


@pytest.mark.parametrize("name", ["inpainting", "pixel_shuffle", "super_resolution"])
def test_forward_loss_depends_on_grid_size(name):
    """Same network and seed, different grid size -> different loss (the config is used)."""
    cls, _ = METHODS[name]
    x = torch.randn(2, 2, 32, 32, generator=_gen(19))
    losses = []
    for g in (2, 8):
        method = _method(cls, cls.make_config({"grid_size": g}))
        with torch.no_grad():
            losses.append(method({"image": x}, generator=_gen(0))["loss"].item())
    assert losses[0] != pytest.approx(losses[1], rel=1e-6), losses


@pytest.mark.parametrize("name", sorted(METHODS))
def test_forward_loss_depends_on_generator_seed(name):
    """Every corruption is random: another generator seed gives another loss (registry contract)."""
    cls, _ = METHODS[name]
    method = _method(cls, cls.make_config())
    x = torch.randn(2, 2, 32, 32, generator=_gen(21))
    with torch.no_grad():
        a, b = (method({"image": x}, generator=_gen(seed))["loss"].item() for seed in (0, 1))
    assert a != pytest.approx(b, rel=1e-6)


def test_super_resolution_without_offset_is_anchored_grid():
    """random_offset=False: the input is the grid anchored at 0, independent of the seed."""
    method = _method(SuperResolution, SuperResolution.make_config({"random_offset": False}))
    x = torch.randn(2, 2, 32, 32, generator=_gen(22))
    corrupted, target = method.corrupt(x, generator=_gen(0))
    assert torch.equal(corrupted, grid_centre_value(x, grid_size=4)) and torch.equal(target, x)
