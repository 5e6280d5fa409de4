"""MAE3D baseline (benchmark/methods/mae3d.py): positions masked in every series, raw-target masked MSE."""
from __future__ import annotations

import benchmark.methods.mae3d as mae3d

import dataclasses

import pytest
import torch

from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.methods import csm, get_method
from benchmark.blocks.masking import patchify, random_token_masks
from benchmark.blocks.losses import normalize_patches
from benchmark.methods.csm import CrossSeriesMasking
from benchmark.methods.mae3d import MAE3D, MAE3DConfig
from tasks import get_task

ROI = (16, 16, 16)  # 8 patches of 8^3 per series
SIZE = dataclasses.replace(SMOKE_SIZE, vit_patch=8)
SMALL = dict(decoder_dim=32, decoder_depth=1, decoder_heads=2)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _method(series: int, **overrides) -> MAE3D:
    torch.manual_seed(0)
    vit = build_backbone("vit", in_channels=series, out_channels=series, size=SIZE, roi=ROI)
    return MAE3D(vit, MAE3DConfig(**SMALL, **overrides), in_channels=series)


@pytest.mark.parametrize("ratio,length", [(0.75, 32), (0.75, 8), (0.5, 10), (0.9, 64)])
def test_masks_exactly_round_ratio_of_all_tokens(ratio, length):
    """Every sample hides exactly round(r·L) of its L tokens; samples differ."""
    mask = random_token_masks(64, length, ratio=ratio, generator=_gen(1))
    assert mask.shape == (64, length) and (mask.sum(dim=1) == round(ratio * length)).all()
    assert len({tuple(m.tolist()) for m in mask}) > 1


def test_mask_ratio_rejected_when_nothing_masked_or_visible():
    with pytest.raises(ValueError, match="mask ratio"):
        random_token_masks(2, 4, ratio=0.99, generator=_gen())
    with pytest.raises(ValueError):
        MAE3DConfig(mask_ratio=1.0)


def test_normalised_patches_have_mean_0_std_1():
    """norm_pix_loss target: each patch has mean 0 and (unbiased) std 1."""
    patches = torch.randn(2, 3, 8, 512, generator=_gen(2)) * 5 + 3
    normed = normalize_patches(patches)
    torch.testing.assert_close(normed.mean(dim=-1), torch.zeros(2, 3, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.std(dim=-1), torch.ones(2, 3, 8), atol=1e-4, rtol=0)
    assert torch.isfinite(normalize_patches(torch.ones(1, 512))).all()  # constant patch: eps keeps it finite


def test_forward_masks_positions_in_every_series_with_raw_target(capture_masked_mse):
    """MAE3D is a single-image-series method (CSM section I): a token spans all series at its position, so
    every masked position is masked in ALL series and every visible one in none; exactly round(r·N)
    positions per sample; the target is the raw patches, as CSM's eq. 2."""
    method = _method(4)
    seen = capture_masked_mse(mae3d)
    x = torch.randn(3, 4, *ROI, generator=_gen(1))
    with torch.no_grad():
        method({"image": x}, generator=_gen(5))
    mask = seen["mask"]  # [B, S, N]
    assert mask.shape == (3, 4, 8)
    assert (mask.all(dim=1) == mask.any(dim=1)).all()  # a position is masked in all series or in none
    assert (mask[:, 0].sum(dim=1) == round(0.75 * 8)).all()
    assert not torch.equal(mask[0, 0], mask[1, 0])  # drawn per sample
    torch.testing.assert_close(seen["target"], patchify(x, 8))
    assert seen["prediction"].shape == (3, 4, 8, 512)


@pytest.mark.parametrize("series", [1, 4])
def test_loss_finite_gradients_and_seeded(series):
    """1 and 4 series: finite loss; gradients reach the decoder head and the encoder's patch embedding; seeded."""
    method = _method(series)
    x = torch.randn(2, series, *ROI, generator=_gen(1))
    loss = method({"image": x}, generator=_gen(0))["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for p in (method.decoder.head.weight, method.backbone.encoder.patch_embed.weight):
        assert p.grad is not None and torch.any(p.grad != 0)
    with torch.no_grad():
        torch.manual_seed(99)
        again = method({"image": x}, generator=_gen(0))["loss"]
        other = method({"image": x}, generator=_gen(1))["loss"]
    torch.testing.assert_close(again, loss.detach())
    assert other.item() != pytest.approx(again.item(), rel=1e-6)


def test_loss_changes_with_mask_ratio_and_norm_pix_loss():
    """Same weights and seed: another mask_ratio or norm_pix_loss=True gives another loss."""
    x = torch.randn(2, 2, *ROI, generator=_gen(1)) * 3 + 1
    losses = {}
    with torch.no_grad():
        for key, overrides in {"default": {}, "half": {"mask_ratio": 0.5}, "normed": {"norm_pix_loss": True}}.items():
            losses[key] = _method(2, **overrides)({"image": x}, generator=_gen(0))["loss"].item()
    assert losses["half"] != pytest.approx(losses["default"], rel=1e-4)
    assert losses["normed"] != pytest.approx(losses["default"], rel=1e-4)


def test_class_description():
    """Registered; CSM's backbone, recipe and transfer; runs on single-series BTCV and on BraTS."""
    assert get_method("mae3d") is MAE3D
    assert MAE3D.paper_recipe == CrossSeriesMasking.paper_recipe and MAE3D.paper == "cross_series_masking"
    assert MAE3D.transfer == "encoder" and not MAE3D.trains_whole_backbone
    assert MAE3D.default_backbone == "vit" and MAE3D.supported_backbones == ("vit", "unetr")  # the series-token encoders
    assert MAE3D.make_config().mask_ratio == 0.75
    # the same target normalisation as CSM (neither paper asks for MAE's norm_pix_loss)
    assert MAE3D.make_config().norm_pix_loss == CrossSeriesMasking.make_config().norm_pix_loss is False
    assert MAE3D.unsupported_reason(task=get_task("btcv"), backbone="vit") is None
    assert MAE3D.unsupported_reason(task=get_task("brats"), backbone="vit") is None
    assert MAE3D.unsupported_reason(task=get_task("brats"), backbone="unet2d") is not None
    assert isinstance(MAE3D(build_backbone("vit", in_channels=1, out_channels=1, size=SIZE, roi=ROI), MAE3DConfig(**SMALL), in_channels=1).decoder, csm.MaskedTokenDecoder)
