"""Decoder denoising (benchmark/methods/ddp.py) and label-aware denoising (benchmark/methods/ladp.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import benchmark.methods.ddp  # noqa: F401  (registration)
import benchmark.methods.ladp  # noqa: F401
from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.methods.base import METHODS
from benchmark.blocks.noise import denoising_corruption
from benchmark.blocks.pretexts.denoising import freeze_encoder
from benchmark.methods.ddp import DDPConfig, DecoderDenoising
from benchmark.blocks.carvemix import carvemix_lambda, carvemix_region, carvemix_regions, region_noise_std, signed_distance
from benchmark.methods.ladp import LabelAwareDenoising, LADPConfig

GAMMA = 0.95


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ball(shape: tuple[int, ...], radius: float, center: tuple[float, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool mask of a disk / sphere and the Euclidean distance of every voxel to its centre."""
    center = center or tuple((s - 1) / 2 for s in shape)
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    rho = torch.sqrt(sum((g - c) ** 2 for g, c in zip(grids, center)))
    return rho <= radius, rho


class Recorder(nn.Module):
    """Stand-in backbone: remembers its input and returns 0.5·input (any spatial dims)."""

    encoder_prefixes = ("encoder.",)

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(1, 1)
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.scale * x


# ---- denoising corruption (DDP, LADP eq. 5) ------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 16, 12), (2, 1, 8, 6, 4)])
def test_corruption_is_sqrt_gamma_x_plus_sqrt_one_minus_gamma_eps_exactly(shape):
    """x' = √γ·x + √(1−γ)·ε with ε the generator's standard normal draw; the returned target is ε (2D and 3D)."""
    x = torch.randn(shape, generator=_gen(1))
    for gamma in (0.95, 0.5):
        noisy, noise = denoising_corruption(x, gamma=gamma, generator=_gen(7))
        eps = torch.randn(shape, generator=_gen(7))
        assert torch.equal(noise, eps)
        torch.testing.assert_close(noisy, math.sqrt(gamma) * x + math.sqrt(1 - gamma) * eps, rtol=0, atol=1e-6)


def test_corruption_with_per_voxel_std_scales_the_noise():
    """With a std map s the noise is W = s·ε and x' = √γ·x + √(1−γ)·W."""
    x = torch.randn(2, 2, 8, 8, generator=_gen(1))
    std = torch.rand(2, 1, 8, 8, generator=_gen(2)) * 2
    noisy, noise = denoising_corruption(x, gamma=GAMMA, noise_std=std, generator=_gen(3))
    eps = torch.randn(x.shape, generator=_gen(3))
    torch.testing.assert_close(noise, std * eps, rtol=0, atol=1e-6)
    torch.testing.assert_close(noisy, math.sqrt(GAMMA) * x + math.sqrt(1 - GAMMA) * std * eps, rtol=0, atol=1e-6)
    a, _ = denoising_corruption(x, gamma=GAMMA, noise_std=std, generator=_gen(3))
    b, _ = denoising_corruption(x, gamma=GAMMA, noise_std=std, generator=_gen(4))
    assert torch.equal(a, noisy) and not torch.equal(a, b)


def test_config_defaults_and_validation():
    """γ = 0.95 (LADP II.C), encoder frozen (III.A), σa = 1.5, σb = 0.8 (II.C); bad values are rejected."""
    assert (DDPConfig().gamma, DDPConfig().freeze_encoder) == (0.95, True)
    cfg = LADPConfig()
    assert (cfg.gamma, cfg.freeze_encoder, cfg.sigma_a, cfg.sigma_b) == (0.95, True, 1.5, 0.8)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            DDPConfig(gamma=bad)
    with pytest.raises(ValueError):
        LADPConfig(sigma_a=-1.0)
    assert LabelAwareDenoising.make_config({"sigma_a": 2.0}).sigma_a == 2.0
    with pytest.raises(ValueError, match="sigma_a"):
        LabelAwareDenoising.make_config({"sigma": 2.0})


def test_class_description_and_paper_recipe():
    assert METHODS.get("ddp") is DecoderDenoising and METHODS.get("ladp") is LabelAwareDenoising
    for cls in (DecoderDenoising, LabelAwareDenoising):
        assert cls.default_backbone == "vgg_unet" and set(cls.supported_backbones) == {"vgg_unet", "vgg16_unet", "unet2d", "resnet_unet", "swin_unetr", "vit", "unetr"}
        assert cls.transfer == "all" and cls.paper == "label_aware_denoising"
        r = cls.paper_recipe
        assert (r.optimizer, r.lr, r.epochs, r.batch_size, r.steps) == ("adam", 1e-4, 30, 16, None)
        assert "II.D" in r.source
        assert cls.backbone_channels(cls.Config(), in_channels=2) == (2, 2)  # predicts noise of every input channel
    assert LabelAwareDenoising.label_aware and not DecoderDenoising.label_aware
    assert DecoderDenoising.paper_recipe.steps_for(85 * 40) == 30 * math.ceil(85 * 40 / 16)


# ---- DDP method -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image():
    return torch.randn(2, 2, 32, 32, generator=_gen(5))


def _vgg(seed=0):
    torch.manual_seed(seed)
    return build_backbone("vgg_unet", in_channels=2, out_channels=2, size=SMOKE_SIZE, roi=(32, 32))


def test_ddp_loss_is_mse_between_prediction_and_eps(image):
    """loss == MSE(backbone(√γ·x + √(1−γ)·ε), ε) with ε from the same seed; same seed same loss."""
    backbone = _vgg()
    method = DecoderDenoising(backbone, DDPConfig(), in_channels=2)
    with torch.no_grad():
        loss = method({"image": image}, generator=_gen(11))["loss"]
        eps = torch.randn(image.shape, generator=_gen(11))
        expected = F.mse_loss(backbone(math.sqrt(GAMMA) * image + math.sqrt(1 - GAMMA) * eps), eps)
        again = method({"image": image}, generator=_gen(11))["loss"]
        other = method({"image": image}, generator=_gen(12))["loss"]
    torch.testing.assert_close(loss, expected)
    assert torch.equal(loss, again) and not torch.equal(loss, other)


@pytest.mark.parametrize("backbone_name", ["vgg_unet", "unet2d"])
def test_freeze_encoder_trains_only_the_decoder(image, backbone_name):
    """freeze_encoder: encoder parameters have requires_grad False and get no gradient; the decoder gets one."""
    torch.manual_seed(0)
    backbone = build_backbone(backbone_name, in_channels=2, out_channels=2, size=SMOKE_SIZE, roi=(32, 32))
    method = DecoderDenoising(backbone, DDPConfig(freeze_encoder=True), in_channels=2)
    method({"image": image}, generator=_gen(1))["loss"].backward()
    encoder = {n: p for n, p in backbone.named_parameters() if n.startswith(backbone.encoder_prefixes)}
    decoder = {n: p for n, p in backbone.named_parameters() if n not in encoder}
    assert encoder and decoder
    assert all(not p.requires_grad and p.grad is None for p in encoder.values())
    assert all(p.requires_grad and p.grad is not None for p in decoder.values())
    assert sum(p.grad.abs().sum() for p in decoder.values()) > 0
    # the loop's optimiser sees only the decoder
    assert {id(p) for p in method.parameters() if p.requires_grad} == {id(p) for p in decoder.values()}


def test_unfrozen_encoder_gets_gradients(image):
    backbone = _vgg()
    method = DecoderDenoising(backbone, DDPConfig(freeze_encoder=False), in_channels=2)
    method({"image": image}, generator=_gen(1))["loss"].backward()
    assert all(p.requires_grad and p.grad is not None for p in backbone.parameters())
    assert all(p.grad.abs().sum() > 0 for n, p in backbone.named_parameters() if n.startswith("encoder."))


def test_freeze_encoder_refuses_prefixes_that_match_nothing():
    net = nn.Conv2d(1, 1, 3)
    net.encoder_prefixes = ("encoder.",)
    with pytest.raises(ValueError, match="encoder_prefixes"):
        freeze_encoder(net)


# ---- signed distance and the CarveMix region -----------------------------------------------------------
def test_signed_distance_sign_and_magnitude_on_a_disk():
    """Negative inside, positive outside; |D| ≈ distance to the circle of radius r; D_min ≈ −r at the centre."""
    r = 10.0
    mask, rho = _ball((41, 41), r)
    d = signed_distance(mask)
    assert d.dtype == torch.float32 and d.shape == mask.shape
    assert (d[mask] < 0).all() and (d[~mask] > 0).all()
    assert d[mask].max() == -1.0 and d[~mask].min() == 1.0  # boundary voxels: one voxel from the other side
    torch.testing.assert_close(d, rho - r, atol=1.0, rtol=0)  # the contour is at most one voxel from the circle
    assert -r - 1 <= d.min() <= -r + 0.5
    assert d[20, 20] == d.min()  # deepest at the centre


def test_signed_distance_3d_and_degenerate_masks():
    mask, rho = _ball((21, 21, 21), 6.0)
    d = signed_distance(mask)
    assert (d[mask] < 0).all() and (d[~mask] > 0).all()
    torch.testing.assert_close(d, rho - 6.0, atol=1.0, rtol=0)
    assert torch.isinf(signed_distance(torch.zeros(5, 5, dtype=torch.bool))).all()
    assert (signed_distance(torch.ones(5, 5, dtype=torch.bool)) == -math.inf).all()
    # spacing scales distances
    d2 = signed_distance(mask, spacing=(2.0, 2.0, 2.0))
    torch.testing.assert_close(d2, 2 * d)


def test_carvemix_lambda_follows_eq3():
    """λ ~ ½U(−½|D_min|, 0) + ½U(0, |D_min|): range, mixture weights and uniform halves."""
    mask, _ = _ball((41, 41), 10.0)
    d = signed_distance(mask)
    size = abs(d.min().item())
    g = _gen(3)
    lams = torch.tensor([carvemix_lambda(d, generator=g) for _ in range(4000)])
    assert lams.min() >= -size / 2 and lams.max() <= size
    neg, pos = lams[lams < 0], lams[lams >= 0]
    assert abs(len(neg) / len(lams) - 0.5) < 0.04
    assert abs(neg.mean().item() + size / 4) < 0.05 * size  # mean of U(−|D|/2, 0)
    assert abs(pos.mean().item() - size / 2) < 0.05 * size  # mean of U(0, |D|)
    assert neg.min() < -0.45 * size and pos.max() > 0.95 * size  # both ends reached
    # no lesion -> λ = 0, still two draws consumed
    g1, g2 = _gen(4), _gen(4)
    assert carvemix_lambda(signed_distance(torch.zeros(8, 8, dtype=torch.bool)), generator=g1) == 0.0
    carvemix_lambda(d, generator=g2)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


@pytest.mark.parametrize("shape,radius", [((41, 41), 10.0), ((25, 25, 25), 8.0)])
def test_carvemix_region_grows_for_positive_and_shrinks_for_negative_lambda(shape, radius):
    """The region is the ball of radius r + λ: a superset of the lesion for λ > 0, a subset for λ < 0 (2D and 3D)."""
    mask, rho = _ball(shape, radius)
    d = signed_distance(mask)
    seen = {"grow": 0, "shrink": 0}
    for seed in range(24):
        lam = carvemix_lambda(d, generator=_gen(seed))
        region = carvemix_region(mask, generator=_gen(seed))
        assert region.dtype == torch.bool and region.shape == mask.shape
        assert torch.equal(region, d <= lam)
        if lam > 0:
            seen["grow"] += 1
            assert (region | mask).equal(region) and region.sum() >= mask.sum()
        elif lam < 0:
            seen["shrink"] += 1
            assert (region & mask).equal(region) and region.sum() <= mask.sum()
        # every voxel within r + λ − 1 of the centre is in, every voxel beyond r + λ + 1 is out
        assert region[rho <= radius + lam - 1].all() and not region[rho > radius + lam + 1].any()
    assert seen["grow"] >= 5 and seen["shrink"] >= 5


def test_carvemix_regions_per_image_and_empty_label():
    """One region per batch image from raw label values (any value > 0 is lesion); no lesion -> empty region."""
    m1, _ = _ball((32, 32), 5.0, center=(10.0, 10.0))
    m2, _ = _ball((32, 32), 7.0, center=(20.0, 18.0))
    label = torch.zeros(3, 1, 32, 32)
    label[0, 0][m1] = 2.0
    label[1, 0][m2] = 1.0
    label[1, 0][m2 & (torch.arange(32)[None, :] > 18)] = 3.0  # several label values are all lesion
    regions = carvemix_regions(label, generator=_gen(0))
    assert regions.shape == label.shape and regions.dtype == torch.bool
    assert not regions[2].any()
    g = _gen(0)
    for b, m in enumerate([m1, m2]):
        assert torch.equal(regions[b, 0], carvemix_region(m, generator=g))  # drawn in batch order from one generator
    assert torch.equal(regions, carvemix_regions(label, generator=_gen(0)))
    with pytest.raises(ValueError):
        carvemix_regions(label[:, 0], generator=_gen(0))


def test_region_noise_std():
    region = torch.tensor([[True, False], [False, True]])
    torch.testing.assert_close(region_noise_std(region, 1.5, 0.8), torch.tensor([[1.5, 0.8], [0.8, 1.5]]))


@pytest.mark.parametrize("spatial", [(96, 96), (24, 24, 24)])
def test_noise_std_ratio_inside_vs_outside_region(spatial):
    """With the pure functions: empirical variance of W inside / outside the region ≈ σa² / σb² (2D and 3D)."""
    mask, _ = _ball(spatial, spatial[0] / 4)
    region = carvemix_region(mask, generator=_gen(1))
    std = region_noise_std(region, 1.5, 0.8)[None, None]  # [1, 1, *spatial]
    x = torch.randn(4, 2, *spatial, generator=_gen(2))
    noisy, noise = denoising_corruption(x, gamma=GAMMA, noise_std=std, generator=_gen(3))
    recovered = (noisy - math.sqrt(GAMMA) * x) / math.sqrt(1 - GAMMA)
    torch.testing.assert_close(recovered, noise, atol=1e-4, rtol=0)
    inside, outside = region.expand_as(noise), ~region.expand_as(noise)
    assert noise[inside].std().item() == pytest.approx(1.5, rel=0.03)
    assert noise[outside].std().item() == pytest.approx(0.8, rel=0.03)
    assert (noise[inside].var() / noise[outside].var()).item() == pytest.approx(1.5**2 / 0.8**2, rel=0.06)


# ---- LADP method ----------------------------------------------------------------------------------------
def _lesion_batch(spatial, channels=2, batch=4):
    mask, rho = _ball(spatial, spatial[0] / 5)
    label = torch.zeros(batch, 1, *spatial)
    label[:, 0][:, mask] = 1.0
    image = torch.randn(batch, channels, *spatial, generator=_gen(8))
    return image, label, signed_distance(mask)


@pytest.mark.parametrize("spatial", [(80, 80), (30, 30, 30)])
def test_ladp_forward_noise_is_sigma_a_around_the_lesion_and_sigma_b_elsewhere(spatial):
    """Through the method: the noise in the backbone's input has std σa where every λ keeps the voxel in the region
    (D ≤ −|D_min|/2), σb where no λ reaches (D > |D_min|); loss = MSE(prediction, W) (2D and 3D)."""
    image, label, d = _lesion_batch(spatial)
    backbone = Recorder()
    method = LabelAwareDenoising(backbone, LADPConfig(freeze_encoder=False), in_channels=2)
    loss = method({"image": image, "label": label}, generator=_gen(9))["loss"]
    noisy = backbone.seen[-1]
    w = (noisy - math.sqrt(GAMMA) * image) / math.sqrt(1 - GAMMA)
    torch.testing.assert_close(loss, F.mse_loss(0.5 * noisy, w), rtol=1e-4, atol=1e-5)
    size = abs(d.min().item())
    core, far = (d <= -size / 2).expand_as(w), (d > size).expand_as(w)
    assert core.sum() > 100 and far.sum() > 1000
    assert w[core].std().item() == pytest.approx(1.5, rel=0.1)
    assert w[far].std().item() == pytest.approx(0.8, rel=0.03)
    # all channels of a voxel share the region: the std ratio holds per channel too
    assert w[:, 1:][core[:, 1:]].std().item() == pytest.approx(1.5, rel=0.12)


def test_ladp_without_lesion_is_ddp_with_sigma_b():
    image, label = torch.randn(2, 2, 32, 32, generator=_gen(1)), torch.zeros(2, 1, 32, 32)
    backbone = Recorder()
    method = LabelAwareDenoising(backbone, LADPConfig(freeze_encoder=False, sigma_b=0.8), in_channels=2)
    method({"image": image, "label": label}, generator=_gen(2))
    w = (backbone.seen[-1] - math.sqrt(GAMMA) * image) / math.sqrt(1 - GAMMA)
    g = _gen(2)
    torch.rand(2, generator=g, dtype=torch.float64), torch.rand(2, generator=g, dtype=torch.float64)  # the two λ draws
    torch.testing.assert_close(w, 0.8 * torch.randn(image.shape, generator=g), atol=1e-4, rtol=0)


def test_ladp_with_sigma_a_equal_sigma_b_equal_one_is_ddp(image):
    """σa = σb = 1 gives DDP's corruption; the loss then equals DDP's after the same λ draws."""
    label = torch.zeros(2, 1, 32, 32)
    label[:, :, 8:20, 10:16] = 1
    backbone = _vgg()
    ladp = LabelAwareDenoising(backbone, LADPConfig(sigma_a=1.0, sigma_b=1.0), in_channels=2)
    with torch.no_grad():
        loss = ladp({"image": image, "label": label}, generator=_gen(3))["loss"]
        g = _gen(3)
        carvemix_regions(label, generator=g)
        eps = torch.randn(image.shape, generator=g)
        expected = F.mse_loss(backbone(math.sqrt(GAMMA) * image + math.sqrt(1 - GAMMA) * eps), eps)
    torch.testing.assert_close(loss, expected)


def test_ladp_on_vgg_unet_freezes_encoder_and_is_seeded(image):
    label = torch.zeros(2, 1, 32, 32)
    label[0, :, 5:15, 10:20] = 1
    backbone = _vgg()
    method = LabelAwareDenoising(backbone, LADPConfig(), in_channels=2)
    batch = {"image": image, "label": label}
    loss = method(batch, generator=_gen(4))["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    for n, p in backbone.named_parameters():
        assert (p.grad is None) == n.startswith("encoder."), n
    with torch.no_grad():
        assert torch.equal(method(batch, generator=_gen(4))["loss"], loss.detach())
        assert not torch.equal(method(batch, generator=_gen(5))["loss"], loss.detach())
    with pytest.raises(ValueError, match="label"):
        method({"image": image, "label": label[:, :, :16]}, generator=_gen(4))
    with pytest.raises(ValueError, match="label-aware"):
        method({"image": image}, generator=_gen(4))
    assert not method.trains_whole_backbone
    assert LabelAwareDenoising(_vgg(), LADPConfig(freeze_encoder=False), in_channels=2).trains_whole_backbone
