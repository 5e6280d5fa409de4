"""CSM ablations of section IV.C (tables VII / VIII) as configuration of benchmark/methods/csm.py."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.methods import csm
from benchmark.blocks.losses import masked_mse
from benchmark.blocks.masking import cross_series_masks, patchify
from benchmark.methods.csm import CrossSeriesMasking, CSMConfig

ROI = (16, 16, 16)
SIZE = dataclasses.replace(SMOKE_SIZE, vit_patch=8)
SMALL = dict(decoder_dim=32, decoder_depth=1, decoder_heads=2)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- masks ------------------------------------------------------------------------------------
def test_same_position_masks_share_the_patch_mask_across_series():
    """same_position_masks=True: every partly visible series of a sample has the same mask, round(r·N) patches."""
    mask, masked_series = cross_series_masks(32, 4, 64, ratio=0.875, generator=_gen(1), same_position_masks=True)
    counts = mask.sum(dim=2)
    assert (counts[~masked_series] == 56).all() and (counts[masked_series] == 64).all()
    for b in range(32):
        visible = [s for s in range(4) if not masked_series[b, s]]
        for s in visible[1:]:
            assert torch.equal(mask[b, s], mask[b, visible[0]])
    assert not torch.equal(mask[0, ~masked_series[0]][0], mask[1, ~masked_series[1]][0])  # still random per sample


def test_random_position_masks_differ_across_series():
    """Default (False): partly visible series of one sample have different masks."""
    mask, masked_series = cross_series_masks(32, 4, 64, ratio=0.875, generator=_gen(1), same_position_masks=False)
    pairs = same = 0
    for b in range(32):
        visible = [s for s in range(4) if not masked_series[b, s]]
        for i in range(len(visible)):
            for j in range(i + 1, len(visible)):
                pairs += 1
                same += int(torch.equal(mask[b, visible[i]], mask[b, visible[j]]))
    assert pairs > 0 and same == 0


def test_no_series_masking_gives_k_zero():
    """series_masking=False: no series is fully hidden, over many draws; every series has round(r·N) hidden."""
    for seed in range(50):
        mask, masked_series = cross_series_masks(16, 4, 16, ratio=0.5, generator=_gen(seed), series_masking=False)
        assert not masked_series.any()
        assert (mask.sum(dim=2) == 8).all()


def test_no_series_masking_allows_one_series_but_default_does_not():
    """Without series masking a single series is fine; cross-series masking of one series is not."""
    mask, masked_series = cross_series_masks(2, 1, 16, ratio=0.5, generator=_gen(), series_masking=False)
    assert mask.shape == (2, 1, 16) and not masked_series.any()
    with pytest.raises(ValueError, match="2 series"):
        cross_series_masks(2, 1, 16, ratio=0.5, generator=_gen())


def test_default_keyword_arguments_keep_the_draws():
    """Passing the defaults explicitly gives exactly the masks of the plain call (same generator use)."""
    a = cross_series_masks(4, 3, 16, ratio=0.75, generator=_gen(5))
    b = cross_series_masks(4, 3, 16, ratio=0.75, generator=_gen(5), same_position_masks=False, series_masking=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_config_defaults_and_validation():
    """Paper defaults are the full method; 'not reconstructing' without series masking is rejected."""
    cfg = CSMConfig()
    assert (cfg.mask_ratio, cfg.same_position_masks, cfg.series_masking, cfg.reconstruct_masked_series) == (0.875, False, True, True)
    with pytest.raises(ValueError, match="reconstruct_masked_series"):
        CSMConfig(series_masking=False, reconstruct_masked_series=False)
    CrossSeriesMasking.make_config({"mask_ratio": 0.5, "same_position_masks": True})


# ---- the method ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone("vit", in_channels=3, out_channels=3, size=SIZE, roi=ROI)


def _method(backbone, **overrides):
    torch.manual_seed(1)  # same decoder initialisation for every config
    return CrossSeriesMasking(backbone, CSMConfig(**SMALL, **overrides), in_channels=3)


def test_not_reconstructing_masked_series_excludes_them_from_the_loss(backbone, capture_masked_mse):
    """reconstruct_masked_series=False: loss = masked MSE over intra-masked patches of partly visible series only."""
    x = torch.randn(4, 3, *ROI, generator=_gen(1))
    ablated, full = _method(backbone, reconstruct_masked_series=False), _method(backbone)
    seen = capture_masked_mse(csm)
    with torch.no_grad():
        loss = ablated({"image": x}, generator=_gen(7))["loss"]
        prediction = seen["prediction"]
        default_loss = full({"image": x}, generator=_gen(7))["loss"]
    mask, masked_series = cross_series_masks(4, 3, 8, ratio=0.875, generator=_gen(7))
    assert masked_series.any()
    expected_mask = mask & ~masked_series[..., None]
    # by hand: per-token MSE averaged over the intra-masked patches of the non-hidden series
    per_token = (prediction - patchify(x, 8)).pow(2).mean(dim=-1)
    expected = per_token[expected_mask].mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(loss, masked_mse(prediction, patchify(x, 8), expected_mask))
    # The encoder input is the same (hidden series still hidden): same prediction, other loss.
    torch.testing.assert_close(seen["prediction"], prediction)
    torch.testing.assert_close(default_loss, masked_mse(prediction, patchify(x, 8), mask))
    assert default_loss.item() != pytest.approx(loss.item(), rel=1e-4)


def test_ablated_configs_run_and_use_their_masks(backbone, capture_masked_mse):
    """same_position_masks / series_masking reach forward: the loss mask has their structure."""
    x = torch.randn(2, 3, *ROI, generator=_gen(2))
    seen = capture_masked_mse(csm)
    with torch.no_grad():
        loss = _method(backbone, series_masking=False)({"image": x}, generator=_gen(3))["loss"]
        assert torch.isfinite(loss) and (seen["mask"].sum(dim=2) == 7).all()
        loss = _method(backbone, same_position_masks=True)({"image": x}, generator=_gen(3))["loss"]
    expected, _ = cross_series_masks(2, 3, 8, ratio=0.875, generator=_gen(3), same_position_masks=True)
    assert torch.isfinite(loss) and torch.equal(seen["mask"], expected)
