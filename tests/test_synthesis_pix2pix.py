"""pix2pix as CoPer appendix C cites it (benchmark/synthesis/pix2pix.py, data.py): U-Net-256, dropout, tanh, Adam β1 0.5,
jitter and flips; checked against an independent port of the authors' recursive ``UnetGenerator``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.profiles import PAPER, SMOKE
from benchmark.synthesis.data import LOAD_RATIO, SliceJitterDataset, jitter
from benchmark.synthesis.pix2pix import UNetGenerator, build_generator, generator_depth
from tasks.base import Volume


# ---- the reference: pytorch-CycleGAN-and-pix2pix models/networks.py (UnetGenerator / UnetSkipConnectionBlock), BatchNorm ----
class _RefBlock(nn.Module):
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False, use_dropout=False):
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)  # use_bias: False with BatchNorm
        downrelu, downnorm = nn.LeakyReLU(0.2, True), nn.BatchNorm2d(inner_nc)
        uprelu, upnorm = nn.ReLU(True), nn.BatchNorm2d(outer_nc)
        if outermost:
            model = [downconv, submodule, uprelu, nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1), nn.Tanh()]
        elif innermost:
            model = [downrelu, downconv, uprelu, nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=False), upnorm]
        else:
            model = [downrelu, downconv, downnorm, submodule, uprelu,
                     nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=False), upnorm]
            model += [nn.Dropout(0.5)] if use_dropout else []
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def _reference(input_nc, output_nc, num_downs, ngf=64):
    block = _RefBlock(ngf * 8, ngf * 8, innermost=True)
    for _ in range(num_downs - 5):
        block = _RefBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=True)
    block = _RefBlock(ngf * 4, ngf * 8, submodule=block)
    block = _RefBlock(ngf * 2, ngf * 4, submodule=block)
    block = _RefBlock(ngf, ngf * 2, submodule=block)
    return _RefBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ours_in_reference_order(gen: UNetGenerator) -> list[nn.Parameter]:
    """The recursion registers every level's down layers outside-in, then the up layers inside-out."""
    return [p for d in gen.down for p in d.parameters()] + [p for u in reversed(gen.up) for p in u.parameters()]


def test_unet_256_has_pix2pix_parameter_count():
    """At the paper size U-Net-256 has 54.414 M parameters (pix2pix's printout for 3 -> 3 channels), CoPer's FLAIR + T1 -> T2
    generator the reference's count for 2 -> 1, layer by layer the same shapes."""
    ours = UNetGenerator(in_channels=3, out_channels=3, filters=64, depth=8)
    assert _count(ours) == 54_413_955 == _count(_reference(3, 3, 8))
    brats = build_generator(in_channels=2, out_channels=1, filters=64, roi=PAPER.rois["pix2pix"])
    reference = _reference(2, 1, 8)
    assert brats.depth == 8 and _count(brats) == _count(reference) == 54_408_833
    assert [p.shape for p in _ours_in_reference_order(brats)] == [p.shape for p in reference.parameters()]
    widths = [d[0].out_channels for d in brats.down]
    assert widths == [64, 128, 256, 512, 512, 512, 512, 512]  # appendix 6.1.1: C64-C128-C256-C512-C512-C512-C512-C512


def test_output_equals_the_reference_with_batchnorm_at_batch_one():
    """The authors' network, trained with batch 1 (BatchNorm over one image = instance norm), and ours give the same
    image for the same weights, skip connections included (the reference's in-place LeakyReLU)."""
    torch.manual_seed(0)
    ours = UNetGenerator(in_channels=2, out_channels=1, filters=8, depth=6)
    reference = _reference(2, 1, 6, ngf=8)
    for a, b in zip(_ours_in_reference_order(ours), reference.parameters(), strict=True):
        with torch.no_grad():
            b.copy_(a + 0.01 * torch.randn_like(a))
            a.copy_(b)
    reference.train()
    for m in reference.modules():
        if isinstance(m, nn.Dropout):
            m.eval()  # compare without the dropout noise
    x = torch.randn(1, 2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference(x), atol=1e-5, rtol=1e-4)


def test_dropout_is_on_the_code_s_blocks_and_active_in_training_only():
    gen = UNetGenerator(in_channels=2, out_channels=1, filters=8, depth=8)
    dropped = [i for i, up in enumerate(gen.up) if any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in up)]
    assert dropped == [4, 5, 6]  # the three ngf*8 blocks outside the innermost (num_downs - 5 = 3)
    x = torch.randn(2, 2, 256, 256)
    with torch.no_grad():
        torch.manual_seed(0)
        a = gen.train()(x)
        b = gen.train()(x)
        c, d = gen.eval()(x), gen.eval()(x)
    assert not torch.equal(a, b)
    torch.testing.assert_close(c, d, atol=0, rtol=0)
    assert [i for i, up in enumerate(UNetGenerator(in_channels=2, out_channels=1, filters=8, depth=6).up)
            if any(isinstance(m, nn.Dropout) for m in up)] == [4]


def test_output_is_tanh_bounded_and_depth_follows_the_crop():
    gen = build_generator(in_channels=2, out_channels=1, filters=8, roi=(64, 64))
    with torch.no_grad():
        y = gen.eval()(1e3 * torch.randn(2, 2, 64, 64))
    assert y.shape == (2, 1, 64, 64) and float(y.abs().max()) <= 1.0 and float(y.abs().max()) > 0.99  # saturates, never beyond
    assert isinstance(gen.up[0][-1], nn.Tanh)
    assert (generator_depth((256, 256)), generator_depth((64, 64)), generator_depth((192, 192)), generator_depth((512, 512))) == (8, 6, 6, 8)
    with pytest.raises(ValueError, match="multiples of 32"):
        generator_depth((48, 48))


def test_weights_start_as_pix2pix_normal_init():
    torch.manual_seed(0)
    gen = build_generator(in_channels=2, out_channels=1, filters=32, roi=(256, 256))
    convs = torch.cat([m.weight.detach().flatten() for m in gen.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    scales = torch.cat([m.weight.detach().flatten() for m in gen.modules() if isinstance(m, nn.InstanceNorm2d)])
    assert float(convs.mean()) == pytest.approx(0.0, abs=1e-3) and float(convs.std()) == pytest.approx(0.02, rel=0.01)
    assert float(scales.mean()) == pytest.approx(1.0, abs=0.01) and float(scales.std()) == pytest.approx(0.02, rel=0.2)


def test_adam_beta1_is_pix2pix_s_half_for_generator_and_discriminator():
    from benchmark.synthesis.pix2pix import GanTrainer, LossWeights, Pix2Pix
    from benchmark.train import make_optimizer

    gen = UNetGenerator(in_channels=2, out_channels=1, filters=8, depth=6)
    for profile in (SMOKE, PAPER):  # the smoke profile runs few steps at a larger lr (benchmark/profiles.py)
        recipe = profile.finetune_recipes["pix2pix"]
        assert make_optimizer(gen.parameters(), recipe).defaults["betas"] == (0.5, 0.999)
    assert PAPER.finetune_recipes["pix2pix"].lr == 2e-4  # CoPer appendix C
    model = Pix2Pix(gen, coper=None, weights=LossWeights(1.0, 1.0, 100.0), discriminator_channels=8, discriminator_lr=2e-4,
                    source_channels=2, target_channels=1)
    assert GanTrainer(model, sources=(0, 1), targets=(2,)).optimizer.defaults["betas"] == (0.5, 0.999)
    lr_only = dict(SMOKE.finetune_recipes["vgg_unet"].__dict__, optimizer="adam")  # another Adam recipe keeps torch's 0.9
    assert make_optimizer(gen.parameters(), type(SMOKE.finetune_recipes["vgg_unet"])(**lr_only)).defaults["betas"] == (0.9, 0.999)


# ---- jitter and the samples ----------------------------------------------------------------------------------
def test_jitter_resizes_by_286_over_256_crops_and_flips():
    """A 64 x 64 slice is resized to 72 x 72 (64 · 286 / 256, pix2pix's load / crop ratio) before the random 64 crop, so a
    16-pixel square becomes 18 pixels wide; half of the draws are flipped left-right."""
    image = -torch.ones(1, 64, 64)
    image[:, 8:24, 30:46] = 1.0
    mask = torch.ones(64, 64, dtype=torch.bool)
    widths, flips = [], 0
    for seed in range(200):
        out, m = jitter(image, mask, roi=(64, 64), rng=np.random.default_rng(seed))
        assert out.shape == (1, 64, 64) and m.shape == (64, 64) and float(out.abs().max()) <= 1.0
        rows = (out[0] > 0).any(dim=1)
        widths.append(int(rows.sum()))
        flips += int(bool((out[0, :32] > 0).sum() < (out[0, 32:] > 0).sum()))  # the square started in the upper X half
    assert round(64 * LOAD_RATIO) == 72 and set(widths) <= {17, 18, 19} and np.median(widths) == 18
    assert 70 < flips < 130
    a, _ = jitter(image, mask, roi=(64, 64), rng=np.random.default_rng(3))
    b, _ = jitter(image, mask, roi=(64, 64), rng=np.random.default_rng(3))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    padded, pm = jitter(image[:, :20, :20], mask[:20, :20], roi=(32, 32), rng=np.random.default_rng(0), flip_prob=0.0)
    assert padded.shape == (1, 32, 32) and float(padded[:, 25:].max()) == -1.0 and not bool(pm[25:].any())  # background padding


def test_samples_are_slices_in_the_pix2pix_domain_that_map_back_to_the_z_scores():
    """Without jitter a sample is a whole slice: every series in [-1, 1] (foreground [min, max] -> [-1, 1], background -1),
    and its (min, max) and mask give back the z-scored slice exactly (what the CoPer loss network reads)."""
    from benchmark.synthesis.scaling import to_zscore

    rng = np.random.default_rng(0)
    image = np.zeros((3, 32, 32, 6), dtype=np.float32)
    image[:, 6:26, 4:28, 1:5] = rng.standard_normal((3, 20, 24, 4))
    data = SliceJitterDataset([Volume("a", image, None)], roi=(32, 32), length=8, seed=0, sources=(0, 1), load_ratio=1.0, flip_prob=0.0)
    for i in range(len(data)):
        sample = data[i]
        y, scale, mask = sample["image"], sample["scale"], sample["mask"]
        z = int(np.flatnonzero([np.allclose(to_zscore(y, scale[:, :1, None], scale[:, 1:, None], mask).numpy(), image[..., k], atol=1e-5)
                                for k in range(6)])[0])
        assert 1 <= z <= 4  # only slices holding foreground are drawn
        assert float(y.min()) == -1.0 and float(y.max()) == 1.0 and bool((y[:, ~mask[0]] == -1).all())
        torch.testing.assert_close(scale[:, 0], torch.from_numpy(image[:, 6:26, 4:28, z].reshape(3, -1).min(axis=1)))
    torch.testing.assert_close(data[5]["image"], data[5]["image"])


def test_synthesize_pads_small_slices_with_background():
    """Slices smaller than the crop are padded with -1 (background of the pix2pix domain), not the window's 0."""
    from benchmark.synthesis.evaluation import synthesize

    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x)
            return x[:, :1]

    sources = torch.rand(2, 40, 48, 3) * 2 - 1
    out = synthesize(Spy(), sources, roi=(64, 64), protocol=SMOKE.protocol)
    assert out.shape == (1, 40, 48, 3)
    torch.testing.assert_close(out, sources[:1])
    assert all(x.shape[-2:] == (64, 64) and float(x[..., 40:, :].max()) == -1.0 for x in seen)


def test_the_z_scale_map_keeps_background_errors_visible():
    """Back on the z-scored scale a real slice is exact (background 0), and a synthetic background that is not -1 keeps
    its error at the slice's slope (hi - lo) / 2 instead of being masked to 0: the CoPer loss and metric see it."""
    from benchmark.synthesis.scaling import SliceScale

    image = torch.zeros(2, 8, 8, 1)
    image[:, 2:6, 2:6, 0] = torch.arange(16.0).reshape(4, 4) - 4  # foreground z-scores -4..11, background 0
    scale = SliceScale.of(image, sources=(0,))
    y = scale.to_pix2pix(image)
    torch.testing.assert_close(scale.to_zscore(y), image)
    fake = y.clone()
    fake[:, 0, 0, 0] = 0.0  # mid-gray where the body is not
    z = scale.to_zscore(fake)
    assert float(z[0, 0, 0, 0]) == pytest.approx((0.0 + 1) / 2 * 15.0)
