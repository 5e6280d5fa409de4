"""Cross-series masking (benchmark/methods/csm.py): masks, patchify, masked loss, packing, method."""
from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.methods import csm
from benchmark.blocks.losses import masked_mse
from benchmark.blocks.masking import cross_series_masks, gather_visible, patchify
from benchmark.methods.csm import CrossSeriesMasking, CSMConfig
from tasks import get_task

ROI = (16, 16, 16)  # two 8^3 ViT patches per axis with SMOKE_SIZE.vit_patch = 8


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- masks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio,n", [(0.875, 64), (0.5, 10), (0.75, 8), (0.3, 7)])
def test_partially_masked_series_hide_exactly_round_ratio_n(ratio, n):
    """Every series that is not fully hidden has exactly round(ratio·N) hidden patches."""
    mask, masked_series = cross_series_masks(32, 4, n, ratio=ratio, generator=_gen(1))
    assert mask.shape == (32, 4, n) and masked_series.shape == (32, 4)
    counts = mask.sum(dim=2)
    assert (counts[~masked_series] == round(ratio * n)).all()
    assert (counts[masked_series] == n).all()


def test_series_masks_are_independent_between_series():
    """Different series of one sample get different patch masks (intra-series masking is per series)."""
    mask, masked_series = cross_series_masks(16, 4, 64, ratio=0.875, generator=_gen(2))
    pairs = same = 0
    for b in range(16):
        visible = [s for s in range(4) if not masked_series[b, s]]
        for i in visible:
            for j in visible:
                if i < j:
                    pairs += 1
                    same += int(torch.equal(mask[b, i], mask[b, j]))
    assert pairs > 0 and same == 0


@pytest.mark.parametrize("s", [2, 3, 4])
def test_number_of_fully_masked_series_in_1_to_s_minus_1(s):
    """k fully hidden series satisfies 1 <= k <= S−1 per sample, and every such k occurs."""
    counts = collections.Counter()
    for seed in range(20):
        mask, masked_series = cross_series_masks(32, s, 16, ratio=0.5, generator=_gen(seed))
        k = masked_series.sum(dim=1)
        assert ((k >= 1) & (k <= s - 1)).all()
        # masked_series agrees with the patch mask: those series are entirely hidden
        assert (mask.all(dim=2) == masked_series).all()
        counts.update(k.tolist())
    assert set(counts) == set(range(1, s))


def test_fully_masked_series_vary_and_never_all_series():
    """Which series are hidden varies, and at least one series stays partly visible."""
    mask, masked_series = cross_series_masks(200, 4, 16, ratio=0.5, generator=_gen(3))
    assert masked_series.any(dim=0).all()  # every series gets hidden sometimes
    assert (~mask).reshape(200, -1).any(dim=1).all()  # every sample keeps visible tokens


def test_single_series_raises():
    """S = 1 cannot be cross-series masked."""
    with pytest.raises(ValueError, match="2 series"):
        cross_series_masks(2, 1, 16, ratio=0.5, generator=_gen())


def test_masks_are_seeded():
    """Same generator seed -> same masks; another seed -> other masks."""
    a = cross_series_masks(4, 3, 16, ratio=0.75, generator=_gen(5))
    b = cross_series_masks(4, 3, 16, ratio=0.75, generator=_gen(5))
    c = cross_series_masks(4, 3, 16, ratio=0.75, generator=_gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


# ---- patchify -----------------------------------------------------------------------------------
def test_patchify_matches_conv3d_tokeniser_order():
    """A Conv3d (kernel = stride = p) with a one-hot weight picking voxel j reproduces patchify[..., j]."""
    p = 4
    x = torch.randn(2, 3, 8, 12, 16, generator=_gen(1))
    patches = patchify(x, p)
    assert patches.shape == (2, 3, 2 * 3 * 4, p**3)
    conv = nn.Conv3d(1, p**3, kernel_size=p, stride=p, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for j in range(p**3):
            conv.weight.view(p**3, -1)[j, j] = 1.0
        tokens = conv(x.reshape(6, 1, 8, 12, 16)).flatten(2).transpose(1, 2).reshape(2, 3, -1, p**3)
    torch.testing.assert_close(patches, tokens)


def test_patchify_matches_vit_tokenise_order():
    """Token n of patchify is the patch the ViT backbone's tokenizer puts at position n."""
    torch.manual_seed(0)
    vit = build_backbone("vit", in_channels=2, out_channels=2, size=SMOKE_SIZE, roi=ROI)
    enc = vit.encoder
    x = torch.randn(1, 2, *ROI, generator=_gen(2))
    with torch.no_grad():
        tokens = enc.tokenize(x) - enc.pos_embed - enc.series_embed[:, :2]  # [1, 2, N, dim]
        w = enc.patch_embed.weight.view(enc.dim, -1)  # [dim, p^3]
        expected = patchify(x, enc.patch) @ w.T + enc.patch_embed.bias
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-4)


def test_patchify_first_patch_is_corner_block():
    """Patch 0 holds voxels [0:p, 0:p, 0:p] in (d, h, w) row-major order; the last patch the far corner."""
    x = torch.arange(8 * 8 * 8, dtype=torch.float32).view(1, 1, 8, 8, 8)
    patches = patchify(x, 4)
    torch.testing.assert_close(patches[0, 0, 0], x[0, 0, :4, :4, :4].reshape(-1))
    torch.testing.assert_close(patches[0, 0, 1], x[0, 0, :4, :4, 4:].reshape(-1))
    torch.testing.assert_close(patches[0, 0, -1], x[0, 0, 4:, 4:, 4:].reshape(-1))


# ---- loss -------------------------------------------------------------------------------------
def test_masked_mse_counts_only_masked_tokens():
    """Eq. 2: mean over hidden tokens only; visible-token errors do not count."""
    target = torch.zeros(1, 2, 3, 4)
    prediction = torch.zeros(1, 2, 3, 4)
    prediction[0, 0, 0] = 2.0  # masked, squared error 4 per element
    prediction[0, 1, 2] = 1.0  # masked, squared error 1
    prediction[0, 0, 1] = 100.0  # visible: must not count
    mask = torch.tensor([[[True, False, False], [False, False, True]]])
    torch.testing.assert_close(masked_mse(prediction, target, mask), torch.tensor(2.5))
    prediction[0, 1, 0] = -50.0  # another visible token
    torch.testing.assert_close(masked_mse(prediction, target, mask), torch.tensor(2.5))


def test_masked_mse_zero_when_masked_tokens_exact():
    """Perfect predictions on hidden tokens give zero loss whatever the visible ones are."""
    target = torch.randn(2, 3, 5, 8, generator=_gen())
    mask = torch.rand(2, 3, 5, generator=_gen(1)) > 0.5
    prediction = torch.where(mask[..., None], target, torch.randn(2, 3, 5, 8, generator=_gen(2)))
    assert masked_mse(prediction, target, mask).item() == 0.0


# ---- packing visible tokens ----------------------------------------------------------------------
def test_gather_visible_packs_in_original_order_with_valid_mask():
    """Visible tokens move to the front in their original order; valid marks the real ones."""
    visible = torch.tensor([[False, True, False, True, True], [True, False, False, False, False], [True, True, True, True, True]])
    tokens = torch.arange(15, dtype=torch.float32).view(3, 5, 1).expand(3, 5, 2).clone()
    packed, order, valid = gather_visible(tokens, visible)
    assert packed.shape == (3, 5, 2)
    assert valid.tolist() == [[True, True, True, False, False], [True, False, False, False, False], [True] * 5]
    assert packed[0, :3, 0].tolist() == [1.0, 3.0, 4.0]
    assert packed[1, :1, 0].tolist() == [5.0]
    assert packed[2, :, 0].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    # order is a permutation whose first entries are the visible indices
    for b in range(3):
        assert sorted(order[b].tolist()) == list(range(5))
        n = int(visible[b].sum())
        assert order[b, :n].tolist() == visible[b].nonzero().flatten().tolist()


def test_gather_visible_random_masks():
    """For random masks, packed[valid] lists exactly the visible tokens, sample by sample, in order."""
    tokens = torch.randn(4, 20, 3, generator=_gen(1))
    visible = torch.rand(4, 20, generator=_gen(2)) > 0.6
    visible[:, 0] = True
    packed, _, valid = gather_visible(tokens, visible)
    assert packed.shape[1] == int(visible.sum(dim=1).max())
    for b in range(4):
        torch.testing.assert_close(packed[b][valid[b]], tokens[b][visible[b]])


# ---- the method ---------------------------------------------------------------------------------
def test_unsupported_for_single_series_task_supported_for_brats():
    """CSM on BTCV (1 CT series) is n/a with a reason; on BraTS (4 series) it runs."""
    reason = CrossSeriesMasking.unsupported_reason(task=get_task("btcv"), backbone="vit")
    assert reason is not None and "series" in reason
    assert CrossSeriesMasking.unsupported_reason(task=get_task("brats"), backbone="vit") is None
    assert CrossSeriesMasking.unsupported_reason(task=get_task("brats"), backbone="unet2d") is not None


@pytest.fixture(scope="module")
def method():
    torch.manual_seed(0)
    vit = build_backbone("vit", in_channels=3, out_channels=3, size=SMOKE_SIZE, roi=ROI)
    return CrossSeriesMasking(vit, CSMConfig(decoder_dim=32, decoder_depth=1, decoder_heads=2), in_channels=3)


def test_forward_targets_patches_under_the_cross_series_mask(method, capture_masked_mse):
    """The loss compares with patchify(x) under exactly the mask drawn from the generator."""
    seen = capture_masked_mse(csm)
    x = torch.randn(2, 3, *ROI, generator=_gen(1))
    with torch.no_grad():
        loss = method({"image": x}, generator=_gen(7))["loss"]
    expected_mask, _ = cross_series_masks(2, 3, 8, ratio=0.875, generator=_gen(7))
    assert torch.equal(seen["mask"], expected_mask)
    torch.testing.assert_close(seen["target"], patchify(x, 8))
    assert seen["prediction"].shape == (2, 3, 8, 512)
    assert torch.isfinite(loss)


def test_forward_uses_configured_mask_ratio(method, capture_masked_mse):
    """CSMConfig.mask_ratio reaches the masks: at r = 0.5, 4 of the 8 patches of each visible series are hidden."""
    seen = capture_masked_mse(csm)
    half = CrossSeriesMasking(method.backbone, CSMConfig(mask_ratio=0.5, decoder_dim=32, decoder_depth=1, decoder_heads=2), in_channels=3)
    with torch.no_grad():
        half({"image": torch.randn(4, 3, *ROI, generator=_gen(1))}, generator=_gen(2))
    counts = seen["mask"].sum(dim=2)
    assert ((counts == 4) | (counts == 8)).all() and (counts == 4).any()


def test_forward_prediction_ignores_hidden_content(method, capture_masked_mse):
    """Changing the voxels of hidden patches does not change the prediction (the encoder sees only visible ones)."""
    seen = capture_masked_mse(csm)
    x = torch.randn(2, 3, *ROI, generator=_gen(1))
    with torch.no_grad():
        method({"image": x}, generator=_gen(9))
        first, mask = seen["prediction"], seen["mask"]
        # overwrite every hidden patch of x with other values
        patches = patchify(x, 8).clone()
        patches[mask] = torch.randn(int(mask.sum()), 512, generator=_gen(2)) * 5
        g = 2  # patches per axis
        x2 = patches.view(2, 3, g, g, g, 8, 8, 8).permute(0, 1, 2, 5, 3, 6, 4, 7).reshape(2, 3, *ROI)
        torch.testing.assert_close(patchify(x2, 8)[~mask], patchify(x, 8)[~mask])
        assert not torch.equal(x2, x)
        method({"image": x2}, generator=_gen(9))
    torch.testing.assert_close(seen["prediction"], first, atol=1e-5, rtol=1e-4)


def test_forward_prediction_depends_on_visible_content(method, capture_masked_mse):
    """Changing visible patches changes the prediction (the visible tokens are used)."""
    seen = capture_masked_mse(csm)
    x = torch.randn(2, 3, *ROI, generator=_gen(1))
    with torch.no_grad():
        method({"image": x}, generator=_gen(9))
        first = seen["prediction"]
        method({"image": x + 1.0}, generator=_gen(9))
    assert not torch.allclose(seen["prediction"], first)


def test_padding_tokens_do_not_affect_encoding(method):
    """With the attention mask, padded slots do not change the encodings of valid tokens."""
    enc = method.backbone.encoder
    tokens = torch.randn(2, 6, enc.dim, generator=_gen(4))
    visible = torch.tensor([[True, False, True, True, False, True], [False, True, False, False, False, False]])
    packed, _, valid = gather_visible(tokens, visible)
    with torch.no_grad():
        together = enc.encode(packed, attn_mask=valid[:, None, None, :])
        alone = enc.encode(tokens[1:2, 1:2])
        packed2 = packed.clone()
        packed2[~valid] = 1000.0  # garbage in padded slots
        together2 = enc.encode(packed2, attn_mask=valid[:, None, None, :])
    torch.testing.assert_close(together[1, :1], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(together[valid], together2[valid], atol=1e-5, rtol=1e-4)


def test_config_validation():
    """mask_ratio outside (0, 1) is rejected; default is the paper's 87.5%."""
    assert CSMConfig().mask_ratio == 0.875
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            CSMConfig(mask_ratio=bad)
