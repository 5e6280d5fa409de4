"""MAE (SimMIM) baseline of the DAE paper: block masking of the configured size, learned mask token."""
from __future__ import annotations

import math

import pytest
import torch

from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.blocks.masking import block_token_mask, mask_block_size
from benchmark.methods import get_method
from benchmark.methods.mae import MAEConfig


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_block_size_is_16_at_the_paper_crop_and_scales_with_the_crop():
    """DAE authors' SimMIM: 16³-voxel mask blocks on the 96³ crop (Swin patch 2, also ViT patch 16); the smoke
    crop 64x64x32 gets 8x8x4 voxels (Swin, patch 2) and 8x8x8 (smoke ViT, patch 8): multiples of the patch
    that divide the crop, nearest to 16·side/96."""
    assert mask_block_size((96, 96, 96), (2, 2, 2), block=16, reference_crop=96) == (16, 16, 16)
    assert mask_block_size((96, 96, 96), (16, 16, 16), block=16, reference_crop=96) == (16, 16, 16)
    assert mask_block_size((64, 64, 32), (2, 2, 2), block=16, reference_crop=96) == (8, 8, 4)
    assert mask_block_size((64, 64, 32), (8, 8, 8), block=16, reference_crop=96) == (8, 8, 8)
    assert mask_block_size((64, 64, 32), (2, 2, 2), block=32, reference_crop=96) == (16, 16, 8)
    with pytest.raises(ValueError):
        mask_block_size((63, 64, 32), (2, 2, 2), block=16, reference_crop=96)


@pytest.mark.parametrize("grid,block", [((48, 48, 48), (8, 8, 8)), ((32, 32, 16), (4, 4, 2)), ((8, 8, 4), (1, 1, 1))])
def test_block_mask_covers_whole_blocks_of_the_configured_size(grid, block):
    """Every masked token lies in a fully masked block of ``block`` tokens aligned to the block grid, and
    exactly round(r·M) of the M blocks are masked per sample (SimMIM's MaskGenerator)."""
    mask = block_token_mask(3, grid, block, ratio=0.6, generator=_gen(1))
    assert mask.shape == (3, *grid)
    blocks = mask.reshape(3, grid[0] // block[0], block[0], grid[1] // block[1], block[1], grid[2] // block[2], block[2])
    per_block = blocks.permute(0, 1, 3, 5, 2, 4, 6).flatten(4)  # [B, *block_grid, tokens per block]
    assert (per_block.all(dim=-1) == per_block.any(dim=-1)).all()  # blocks are all-or-nothing
    m = math.prod(g // b for g, b in zip(grid, block))
    assert (per_block.all(dim=-1).flatten(1).sum(dim=1) == round(0.6 * m)).all()
    assert not torch.equal(mask[0], mask[1])
    assert torch.equal(mask, block_token_mask(3, grid, block, ratio=0.6, generator=_gen(1)))


@pytest.mark.parametrize("backbone,channels", [("swin_unetr", 1), ("vit", 2)])
def test_mae_masks_16_voxel_blocks_at_paper_scale_with_a_learned_token(backbone, channels):
    """At the paper's 96-voxel crop side the masked voxels form 16-voxel blocks (here on a 96x32x32 crop, the
    block side 16 along the 96 axis), the masked tokens carry the learned mask token (it gets a gradient),
    and the masked voxels are zeroed in the input (the skip path cannot copy them)."""
    roi = (96, 32, 32)
    torch.manual_seed(0)
    net = build_backbone(backbone, in_channels=channels, out_channels=channels, size=SMOKE_SIZE, roi=roi)
    method = get_method("mae")(net, MAEConfig(), in_channels=channels)
    patch = net.patch_size
    block = method.block_size(roi)
    assert block[0] == 16 and all(r % b == 0 and b % p == 0 for r, b, p in zip(roi, block, patch))
    x = torch.randn(2, channels, *roi, generator=_gen(2)) + 10.0  # no voxel is zero by chance
    seen = {}
    handle = net.register_forward_pre_hook(lambda _m, args: seen.update(input=args[0]))
    try:
        loss = method({"image": x}, generator=_gen(3))["loss"]
    finally:
        handle.remove()
    hidden = (seen["input"] == 0).all(dim=1)  # [B, *roi]
    cells = hidden.reshape(2, roi[0] // block[0], block[0], roi[1] // block[1], block[1], roi[2] // block[2], block[2])
    cells = cells.permute(0, 1, 3, 5, 2, 4, 6).flatten(4)
    assert (cells.all(dim=-1) == cells.any(dim=-1)).all() and cells.any()
    loss.backward()
    assert method.mask_token.grad is not None and torch.any(method.mask_token.grad != 0)
    assert not net.patch_embed._forward_hooks


def test_mae_config_block_validation():
    assert (MAEConfig().mask_block_size, MAEConfig().mask_block_reference_crop) == (16, 96)
    with pytest.raises(ValueError):
        MAEConfig(mask_block_size=0)
