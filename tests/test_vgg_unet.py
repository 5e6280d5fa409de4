"""TernausNet-style VGG11 U-Net backbone (benchmark/backbones/vgg_unet.py, "vgg_unet")."""
from __future__ import annotations

import socket

import pytest
import torch

from benchmark.backbones import PAPER_SIZE, SMOKE_SIZE, BackboneSize, VGGUNet, build_backbone, list_backbones


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Building the backbone must not touch the network (no pretrained weights are fetched)."""

    def refuse(*args, **kwargs):
        raise AssertionError("vgg_unet tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _build(in_channels=2, out_channels=2, size=SMOKE_SIZE, roi=(64, 64)) -> VGGUNet:
    torch.manual_seed(0)
    return build_backbone("vgg_unet", in_channels=in_channels, out_channels=out_channels, size=size, roi=roi)


def test_registered_and_declares_its_surface():
    assert "vgg_unet" in list_backbones()
    assert VGGUNet.spatial_dims == 2 and VGGUNet.encoder_prefixes == ("encoder.",)
    assert BackboneSize().vgg_width == 1.0  # the default is the paper's network


@pytest.mark.parametrize("roi", [(64, 64), (32, 96)])
def test_forward_shape_and_gradients(roi):
    """A 64x64 crop (2x2 centre after five pools) and a non-square one map to [B, out, H, W]; every parameter gets a gradient."""
    net = _build(in_channels=2, out_channels=3, roi=roi)
    x = torch.randn(1, 2, *roi)
    y = net(x)
    assert y.shape == (1, 3, *roi)
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_rejects_crops_that_five_pools_do_not_divide():
    with pytest.raises(ValueError, match="multiples of 32"):
        _build(roi=(48, 64))


def test_paper_width_encoder_is_timms_vgg11_and_decoder_is_ternausnet():
    """At width 1 the encoder has exactly timm vgg11's conv layers and the decoder TernausNet UNet11's widths (num_filters 32)."""
    import timm

    net = _build(in_channels=3, out_channels=1, size=PAPER_SIZE)
    reference = timm.create_model("vgg11", pretrained=False, features_only=True, in_chans=3)
    ours = {k: v.shape for k, v in net.encoder.state_dict().items()}
    assert ours == {k: v.shape for k, v in reference.state_dict().items()}
    assert net.encoder.feature_info.channels() == [64, 128, 256, 512, 512, 512]
    assert net.encoder.feature_info.reduction() == [1, 2, 4, 8, 16, 32]
    # TernausNet UNet11: center (512 -> 512 -> 256), dec5/dec4 (768 -> 512 -> 256/128), dec3 (384 -> 256 -> 64),
    # dec2 (192 -> 128 -> 32), dec1 (96 -> 32), final 32 -> classes.
    widths = {
        "center": (512, 512, 256), "dec5": (768, 512, 256), "dec4": (768, 512, 128), "dec3": (384, 256, 64), "dec2": (192, 128, 32),
    }
    for name, (cin, mid, cout) in widths.items():
        block = getattr(net, name)
        assert (block[0][0].in_channels, block[0][0].out_channels, block[1].out_channels) == (cin, mid, cout), name
        assert block[1].stride == (2, 2)
    assert (net.dec1[0].in_channels, net.dec1[0].out_channels) == (96, 32)
    assert (net.final.in_channels, net.final.out_channels) == (32, 1)


def test_encoder_prefixes_cover_the_encoder_and_only_it():
    net = _build()
    names = [n for n, _ in net.named_parameters()]
    encoder = [n for n in names if n.startswith(VGGUNet.encoder_prefixes)]
    assert len(encoder) == 16  # 8 VGG11 convolutions, weight + bias
    assert all(n.startswith(("center", "dec", "final")) for n in names if n not in encoder)


def test_replace_input_and_output_change_channels_and_keep_other_weights():
    net = _build(in_channels=2, out_channels=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.replace_input(4)
    net.replace_output(5)
    assert net(torch.randn(1, 4, 64, 64)).shape == (1, 5, 64, 64)
    after = net.state_dict()
    assert set(after) == set(before)
    changed = {k for k in before if after[k].shape != before[k].shape}
    assert changed == {"encoder.features_0.weight", "final.weight", "final.bias"}
    for k in before:
        if k not in changed and k not in {"encoder.features_0.bias"}:
            assert torch.equal(after[k], before[k]), k
    with pytest.raises(RuntimeError):
        net(torch.randn(1, 2, 64, 64))


def test_same_seed_same_network():
    a, b = _build(), _build()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_decoder_blocks_read_the_encoder_skip_features():
    """U-Net skips: the centre reads the last pool, dec5..dec1 read [upsampled, encoder map at the same stride]."""
    net = _build()
    seen = {}
    hooks = [net.encoder.register_forward_hook(lambda _m, _i, out: seen.__setitem__("encoder", [f.clone() for f in out]))]
    for name in ("center", "dec5", "dec4", "dec3", "dec2", "dec1"):
        hooks.append(getattr(net, name).register_forward_pre_hook(lambda _m, args, name=name: seen.__setitem__(name, args[0].clone())))
    with torch.no_grad():
        net(torch.randn(1, 2, 64, 64))
    for h in hooks:
        h.remove()
    conv1, conv2, conv3, conv4, conv5, pooled = seen["encoder"]
    assert torch.equal(seen["center"], pooled)
    for name, skip in (("dec5", conv5), ("dec4", conv4), ("dec3", conv3), ("dec2", conv2), ("dec1", conv1)):
        assert torch.equal(seen[name][:, -skip.shape[1]:], skip), name


# ---- vgg16_unet: TernausNet's UNet16, the CoPer paper's VGG-16 --------------------------------------------------
def test_vgg16_unet_encoder_is_timms_vgg16_with_lpips_layers_and_unet16_decoder():
    """At width 1: exactly timm vgg16's 13 convolutions (14.7 M parameters, torchvision's VGG-16 features), its five
    ReLU maps before each pool (LPIPS's relu1_2 ... relu5_3: 64, 128, 256, 512, 512 channels at strides 1..16) and
    TernausNet UNet16's decoder (its fourth block gives 8 x 32 = 256 channels; UNet11's 128)."""
    import timm

    from benchmark.backbones import VGG16UNet

    assert "vgg16_unet" in list_backbones() and "vgg_unet" in list_backbones()
    torch.manual_seed(0)
    net = build_backbone("vgg16_unet", in_channels=3, out_channels=1, size=PAPER_SIZE, roi=(64, 64))
    assert isinstance(net, VGG16UNet) and net.vgg == "vgg16"
    reference = timm.create_model("vgg16", pretrained=False, features_only=True, in_chans=3)
    assert {k: v.shape for k, v in net.encoder.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    assert sum(p.numel() for p in net.encoder.parameters()) == 14_714_688
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.encoder.modules()) == 13
    assert net.encoder.feature_info.channels() == [64, 128, 256, 512, 512, 512]
    assert net.encoder.feature_info.reduction() == [1, 2, 4, 8, 16, 32]
    widths = {"center": (512, 512, 256), "dec5": (768, 512, 256), "dec4": (768, 512, 256), "dec3": (512, 256, 64), "dec2": (192, 128, 32)}
    for name, (cin, mid, cout) in widths.items():
        block = getattr(net, name)
        assert (block[0][0].in_channels, block[0][0].out_channels, block[1].out_channels) == (cin, mid, cout), name
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net.encoder_features(x)
        assert net(x).shape == (2, 1, 64, 64)
    assert [f.shape[1:] for f in feats[:5]] == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (512, 4, 4)]
    assert all(float(f.min()) >= 0 for f in feats[:5])  # ReLU activations, as LPIPS reads them


def test_vgg16_unet_smoke_width_and_the_vgg11_network_are_unchanged():
    small = build_backbone("vgg16_unet", in_channels=1, out_channels=1, size=SMOKE_SIZE, roi=(64, 64))
    assert small.encoder.feature_info.channels() == [16, 32, 64, 128, 128, 128]
    vgg11 = _build(in_channels=3, out_channels=1, size=PAPER_SIZE)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in vgg11.encoder.modules()) == 8 and vgg11.dec4[1].out_channels == 128
