"""The denoising autoencoder (Vincent et al. 2008; LADP Table 1 "DAE [16]"): the target is the CLEAN input (not the
noise, as DDP's), the Gaussian corruption is DDP's, and the masking noise destroys exactly ν·d components."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import BackboneSize, build_backbone
from benchmark.blocks.masking_noise import masking_noise
from benchmark.methods import get_method

TINY = BackboneSize(unet_features=(8, 8, 16, 16, 16, 8), vgg_width=0.125)


def _method(backbone: str = "vgg_unet", **overrides):
    cls = get_method("denoising_ae")
    torch.manual_seed(0)
    net = build_backbone(backbone, in_channels=2, out_channels=2, size=TINY, roi=(64, 64))
    return cls(net, cls.make_config(overrides), in_channels=2)


class Identity(nn.Module):
    """A stand-in backbone that returns its input: the loss is then the corruption's own error."""

    encoder_prefixes = ("none.",)

    def forward(self, x):
        return x


def test_gaussian_corruption_is_ddps_and_the_target_is_the_clean_input():
    """loss = ‖f(√γ·x + √(1−γ)·ε) − x‖² with ε from the generator: DDP's noised input, Vincent's clean target."""
    method = _method()
    x = torch.randn(2, 2, 64, 64)
    loss = method({"image": x}, generator=torch.Generator().manual_seed(3))["loss"]
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    noisy = math.sqrt(0.95) * x + math.sqrt(0.05) * eps
    with torch.no_grad():
        out = method.backbone(noisy)
    torch.testing.assert_close(loss.detach(), F.mse_loss(out, x))
    assert not torch.isclose(loss.detach(), F.mse_loss(out, eps))  # not DDP's target


def test_masking_noise_destroys_exactly_nu_d_components_per_sample():
    x = torch.randn(3, 2, 8, 10) + 5.0  # no zeros before masking
    noisy, mask = masking_noise(x, fraction=0.25, generator=torch.Generator().manual_seed(0))
    d = 2 * 8 * 10
    assert mask.flatten(1).sum(dim=1).tolist() == [round(0.25 * d)] * 3
    assert torch.all(noisy[mask] == 0) and torch.equal(noisy[~mask], x[~mask])
    assert not torch.equal(mask[0], mask[1])  # each sample its own components
    again, _ = masking_noise(x, fraction=0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, noisy)


def test_masking_loss_with_an_identity_network_is_the_energy_of_the_destroyed_components():
    """Vincent's reconstruction error over every component: an identity network errs by x on the zeroed ones only."""
    cls = get_method("denoising_ae")
    method = cls(Identity(), cls.make_config({"corruption": "masking", "mask_fraction": 0.4}), in_channels=1)
    x = torch.randn(2, 1, 16, 16)
    loss = method({"image": x}, generator=torch.Generator().manual_seed(1))["loss"]
    _, mask = masking_noise(x, fraction=0.4, generator=torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(float((x[mask] ** 2).sum() / x.numel()), rel=1e-6)


def test_config_rejects_a_strength_its_corruption_does_not_read():
    cls = get_method("denoising_ae")
    with pytest.raises(ValueError, match="gamma=0.9 only applies to corruption='gaussian'"):
        cls.make_config({"corruption": "masking", "gamma": 0.9})
    with pytest.raises(ValueError, match="mask_fraction=0.1 only applies to corruption='masking'"):
        cls.make_config({"mask_fraction": 0.1})
    with pytest.raises(ValueError, match="corruption"):
        cls.make_config({"corruption": "salt"})


def test_whole_network_trains_unless_the_encoder_is_frozen():
    assert all(p.requires_grad for p in _method().backbone.parameters())
    frozen = _method(freeze_encoder=True)
    assert not frozen.trains_whole_backbone
    assert all(not p.requires_grad for n, p in frozen.backbone.named_parameters() if frozen.backbone.in_encoder(n))
