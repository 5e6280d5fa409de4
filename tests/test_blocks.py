"""Building blocks (benchmark/blocks/) that the method tests do not already cover: dimension-generic
heads, masks and mixing in 2D and 3D, the token-encoder guard, and the pretext bases' declarations."""
from __future__ import annotations

import pytest
import torch

from benchmark.blocks.groups import ALL_BACKBONES, BACKBONES_2D, BACKBONES_3D
from benchmark.blocks.heads import pooled, reconstruction_head, token_encoder
from benchmark.blocks.masking import random_token_masks, token_mask, voxel_mask
from benchmark.blocks.mixing import mix_sources
from benchmark.blocks.pretext import PretextTask


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dims, stride", [(2, 16), (2, 32), (3, 8), (3, 32)])
def test_reconstruction_head_upsamples_the_bottleneck_by_its_stride(dims, stride):
    """log2(stride) 2x stages back to the input size, in 2D and 3D."""
    head = reconstruction_head(48, 3, stride=stride, spatial_dims=dims)
    z = torch.randn(2, 48, *([2] * dims))
    assert head(z).shape == (2, 3, *([2 * stride] * dims))


def test_reconstruction_head_at_stride_32_is_the_reference_head():
    """Five stages with widths dim/2, /4, /8, /16, /16 (Tang et al.'s SSLHead "vae" head)."""
    head = reconstruction_head(192, 4)
    convs = [m for m in head if isinstance(m, torch.nn.Conv3d)]
    assert [c.out_channels for c in convs] == [96, 48, 24, 12, 12, 4]


def test_reconstruction_head_rejects_a_stride_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="power-of-two"):
        reconstruction_head(16, 1, stride=12)


@pytest.mark.parametrize("grid", [(4, 4), (4, 4, 2)])
def test_token_and_block_masks_exact_ratio_2d_3d(grid):
    """Exactly round(r·N) tokens per sample; the voxel (block) mask covers patch-sized blocks."""
    mask = token_mask(3, grid, ratio=0.6, generator=_gen())
    n = torch.tensor(grid).prod().item()
    assert (mask.flatten(1).sum(dim=1) == round(0.6 * n)).all()
    voxels = voxel_mask(mask, (2,) * len(grid))
    assert voxels.shape == (3, 1, *(2 * g for g in grid))
    assert voxels.float().mean().item() == pytest.approx(mask.float().mean().item())


def test_random_token_masks_same_seed_same_mask():
    torch.testing.assert_close(random_token_masks(2, 10, ratio=0.5, generator=_gen(3)), random_token_masks(2, 10, ratio=0.5, generator=_gen(3)))


def test_mix_sources_in_3d():
    """Source-pool mixing works on any spatial dims; weights sum to one."""
    pool = torch.randn(2, 5, 1, 4, 4, 4)
    mixtures, weights, index = mix_sources(pool, sources_per_mixture=3, num_mixtures=2, generator=_gen())
    assert mixtures.shape == (2, 2, 1, 4, 4, 4)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 2))
    assert (index[..., 0] == 0).all()


def test_pooled_averages_every_spatial_dim():
    z = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert pooled(z).item() == pytest.approx(7.5)
    assert pooled(torch.ones(2, 3, 2, 2, 2)).shape == (2, 3)


def test_token_encoder_guard_names_method_and_backbone():
    class Conv(torch.nn.Module):
        token_encoder = None

    with pytest.raises(ValueError, match="csm .*Conv has none"):
        token_encoder(Conv(), "csm")


def test_backbone_groups_cover_the_registry():
    from benchmark.backbones import BACKBONES, list_backbones

    assert set(ALL_BACKBONES) == set(list_backbones())
    assert all(BACKBONES.get(b).spatial_dims == 2 for b in BACKBONES_2D)
    assert all(BACKBONES.get(b).spatial_dims == 3 for b in BACKBONES_3D)


def test_pretext_bases_are_not_registered():
    """The shared bases in benchmark.blocks.pretexts are PretextTasks, but only their subclasses are methods."""
    from benchmark.blocks.pretexts import denoising, reconstruction, scratch, source_identification, swin_ssl
    from benchmark.methods import METHODS

    bases = [denoising.DenoisingPretext, reconstruction.ReconstructionPretext, scratch.NoPretext,
             source_identification.SourceIdentificationPretext, swin_ssl.SwinSSLPretext]
    registered = {METHODS.get(n) for n in METHODS.names()}
    for base in bases:
        assert issubclass(base, PretextTask) and base not in registered
        assert any(issubclass(cls, base) for cls in registered)
