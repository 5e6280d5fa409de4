"""The UNETR backbone: MONAI's UNETR exactly for one series, its series-token ViT as a token encoder (masked
encoding, per-series tokens), inflation of a one-series network, and its profile entries."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from benchmark.backbones import BackboneSize, build_backbone
from benchmark.backbones.transfer import transfer_model
from benchmark.blocks.masking import gather_visible
from benchmark.methods import get_method
from benchmark.profiles import PAPER, SMOKE

TINY = BackboneSize(vit_dim=24, vit_heads=2, unetr_feature_size=8)
ROI = (32, 32, 48)


def test_one_series_is_monai_unetr_exactly():
    """With one series (and the series embedding at 0) the network is monai.networks.nets.UNETR with the same weights."""
    from monai.networks.nets import UNETR

    torch.manual_seed(0)
    net = build_backbone("unetr", in_channels=1, out_channels=3, size=TINY, roi=ROI).eval()
    ref = UNETR(in_channels=1, out_channels=3, img_size=ROI, feature_size=8, hidden_size=24, mlp_dim=96, num_heads=2, proj_type="conv",
                norm_name="instance", res_block=True).eval()
    renamed = {("vit." + k[len("encoder.vit."):] if k.startswith("encoder.vit.") else k[len("net."):]): v
               for k, v in net.state_dict().items() if k != "encoder.series_embed"}
    ref.load_state_dict(renamed, strict=True)
    with torch.no_grad():
        net.encoder.series_embed.zero_()
        x = torch.randn(2, 1, *ROI)
        torch.testing.assert_close(net(x), ref(x), rtol=0, atol=1e-6)
        last, hidden = ref.vit(x)
        torch.testing.assert_close(net.bottleneck(x), ref.proj_feat(last), rtol=0, atol=1e-6)
        torch.testing.assert_close(net.encoder_features(x)[0], ref.proj_feat(hidden[3]), rtol=0, atol=1e-6)


def test_every_series_is_its_own_token():
    """Tokens [B, S, N, dim]: series s's tokens depend on series s only, and the series embedding tells them apart."""
    torch.manual_seed(0)
    net = build_backbone("unetr", in_channels=3, out_channels=2, size=TINY, roi=ROI)
    enc = net.token_encoder
    x = torch.randn(1, 3, *ROI)
    tokens = enc.tokenize(x)
    assert tokens.shape == (1, 3, 2 * 2 * 3, 24) and enc.num_patches == 12 and enc.patch == 16
    y = x.clone()
    y[:, 1] = 0.0
    changed = enc.tokenize(y)
    assert torch.equal(changed[:, 0], tokens[:, 0]) and torch.equal(changed[:, 2], tokens[:, 2])
    assert not torch.equal(changed[:, 1], tokens[:, 1])
    same = x[:, :1].expand(1, 3, *ROI)
    t = enc.tokenize(same)
    torch.testing.assert_close(t[:, 1] - t[:, 0], (enc.series_embed[:, 1] - enc.series_embed[:, 0]).expand_as(t[:, 0]))


def test_masked_encoding_equals_encoding_the_visible_tokens_alone():
    """encode(packed tokens, key mask) on the visible tokens = encoding them without the padding (MAE / CSM's use)."""
    torch.manual_seed(0)
    enc = build_backbone("unetr", in_channels=2, out_channels=2, size=TINY, roi=ROI).token_encoder.eval()
    tokens = enc.tokenize(torch.randn(2, 2, *ROI)).reshape(2, 24, 24)
    visible = torch.zeros(2, 24, dtype=torch.bool)
    visible[0, :10] = True
    visible[1, 5:9] = True
    packed, order, valid = gather_visible(tokens, visible)
    with torch.no_grad():
        out = enc.encode(packed, attn_mask=valid[:, None, None, :])
        for b in range(2):
            alone = enc.encode(tokens[b:b + 1, visible[b]])
            torch.testing.assert_close(out[b:b + 1, : int(visible[b].sum())], alone, rtol=1e-5, atol=1e-5)


def test_one_series_network_is_inflated_for_several_series():
    """DAE pretrains on one modality: the series embedding is repeated and encoder1's input convs inflated, so a
    constant multi-series input gives the one-series response."""
    torch.manual_seed(0)
    pretrained = build_backbone("unetr", in_channels=1, out_channels=1, size=TINY, roi=ROI)
    task = SimpleNamespace(name="fake", channels=("a", "b", "c", "d"), num_outputs=3)
    model = transfer_model(get_method("dae"), "unetr", state=pretrained.state_dict(), pretrain_channels=(1, 1), task=task, size=TINY, roi=ROI)
    x = torch.randn(1, 1, *ROI)
    with torch.no_grad():
        assert torch.equal(model.encoder.series_embed, pretrained.encoder.series_embed.repeat(1, 4, 1, 1))
        torch.testing.assert_close(model.net.encoder1(x.repeat(1, 4, 1, 1, 1)), pretrained.net.encoder1(x), atol=1e-5, rtol=1e-5)
        assert model(torch.randn(1, 4, *ROI)).shape == (1, 3, *ROI)


def test_profiles_have_unetr_entries_its_patches_divide():
    for profile in (SMOKE, PAPER):
        roi = profile.rois["unetr"]
        assert len(roi) == 3 and all(r % 16 == 0 for r in roi)
        assert "unetr" in profile.finetune_recipes
    assert "unetr" in SMOKE.smoke_pretrain
    assert PAPER.rois["unetr"] == (96, 96, 96)  # CSM IV.A
