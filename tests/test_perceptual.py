"""CoPer metric, loss, weights, 2AFC / expert agreement and their readers (benchmark/perceptual)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.errors import BenchmarkInputError
from benchmark.perceptual.metric import (
    CoPerLoss, coper_distance, learn_weights, load_extractor, random_extractor, triplet_distances, vit_blocks,
)
from benchmark.perceptual.twoafc import Triplet, expert_agreement, read_ratings, read_triplets, twoafc_score
from tasks.nifti import save_nifti

# torchvision's notice about LPIPS's ``pretrained=`` argument (its trunk is built with weights=None).
pytestmark = pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")


@pytest.fixture(scope="module")
def resnet():
    return random_extractor("resnet_unet", size="smoke")


@pytest.fixture(scope="module")
def vgg():
    return random_extractor("vgg_unet", size="smoke")


def _images(seed=0, b=2, c=1, s=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, s, s, generator=g), torch.randn(b, c, s, s, generator=g)


# ---- the metric -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet", "vgg"])
def test_zero_on_identical_images_and_symmetric(name, request):
    ext = request.getfixturevalue(name)
    x0, x1 = _images()
    assert torch.equal(coper_distance(x0, x0, ext), torch.zeros(2))
    d01, d10 = coper_distance(x0, x1, ext), coper_distance(x1, x0, ext)
    assert d01.shape == (2,) and (d01 > 0).all()
    torch.testing.assert_close(d01, d10)
    w = [torch.rand(c, generator=torch.Generator().manual_seed(i)) for i, c in enumerate(ext.channels())]
    torch.testing.assert_close(coper_distance(x0, x1, ext, w), coper_distance(x1, x0, ext, w))


def test_grey_is_repeated_to_three_channels(resnet):
    """Appendix B: a grey image is stacked with two copies of itself."""
    x0, x1 = _images()
    torch.testing.assert_close(coper_distance(x0, x1, resnet), coper_distance(x0.repeat(1, 3, 1, 1), x1.repeat(1, 3, 1, 1), resnet))
    with pytest.raises(ValueError, match="3 channel"):
        resnet(torch.zeros(1, 2, 64, 64))


def test_stronger_noise_is_farther(vgg):
    x0, _ = _images()
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(x0.shape, generator=g)
    assert (coper_distance(x0, x0 + 0.1 * noise, vgg) < coper_distance(x0, x0 + 0.5 * noise, vgg)).all()


def test_vit_features_are_token_grids():
    """Appendix A: tokens of five blocks reshaped from [N, M] to [M, h, w]."""
    assert vit_blocks(12) == (0, 3, 6, 8, 11) and vit_blocks(2) == (0, 1)
    ext = random_extractor("vit", size="smoke")
    feats = ext(torch.zeros(1, 1, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, SMOKE_SIZE.vit_dim, 8, 8)] * SMOKE_SIZE.vit_depth
    x0, x1 = _images()
    assert torch.equal(coper_distance(x0, x0, ext), torch.zeros(2)) and (coper_distance(x0, x1, ext) > 0).all()


# ---- 2AFC and expert agreement ------------------------------------------------------------------------------------
def test_twoafc_formula_by_hand():
    # d0 < d1 (p0 closer) agrees with the 1 - h share; d1 < d0 with h; ties score 0.5
    assert twoafc_score([1.0], [2.0], [0.0]) == 1.0
    assert twoafc_score([1.0], [2.0], [1.0]) == 0.0
    assert twoafc_score([3.0], [2.0], [1.0]) == 1.0
    assert twoafc_score([2.0], [2.0], [0.3]) == 0.5
    assert twoafc_score([1.0, 3.0, 2.0, 1.0], [2.0, 2.0, 2.0, 2.0], [0.25, 0.75, 1.0, 0.0]) == pytest.approx((0.75 + 0.75 + 0.5 + 1.0) / 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        twoafc_score([1.0], [2.0], [1.5])
    with pytest.raises(ValueError, match="same"):
        twoafc_score([1.0, 2.0], [2.0], [1.0])


def test_expert_agreement_normalises_by_the_maximum():
    """IV.A.4: d' = d / max d; r = |r^R - r^S|, r' = r / max r."""
    res = expert_agreement([1.0, 2.0, 4.0], [6, 6, 5], [5, 4, 1])  # r = 1, 2, 4
    assert res["metric_mean"] == pytest.approx(7 / 12) and res["expert_mean"] == pytest.approx(7 / 12)
    assert res["mean_gap"] == pytest.approx(0.0) and res["mean_abs_error"] == pytest.approx(0.0) and res["spearman"] == pytest.approx(1.0)
    res = expert_agreement([4.0, 2.0, 1.0], [6, 6, 5], [5, 4, 1])
    assert res["spearman"] == pytest.approx(-1.0) and res["mean_abs_error"] == pytest.approx((0.75 + 0 + 0.75) / 3)


def _write_triplets(root: Path, text: str, shape=(32, 32)) -> None:
    rng = np.random.default_rng(0)
    for name in ("r", "a", "b"):
        save_nifti(rng.normal(size=shape).astype(np.float32), root / f"{name}.nii.gz")
    (root / "triplets.csv").write_text(text)


def test_triplet_reader_reads_the_layout(tmp_path):
    _write_triplets(tmp_path, "ref,p0,p1,h\nr.nii.gz,a.nii.gz,b.nii.gz,0.25\nr.nii.gz,b.nii.gz,a.nii.gz,1\n")
    triplets = read_triplets(tmp_path)
    assert [t.h for t in triplets] == [0.25, 1.0] and triplets[0].ref.shape == (1, 32, 32)
    assert triplets[1].source == "triplets.csv line 3"


@pytest.mark.parametrize("text, match", [
    ("ref,p0,h\nr.nii.gz,a.nii.gz,0\n", r"triplets.csv line 1: missing column\(s\) p1"),
    ("ref,p0,p1,h\nr.nii.gz,a.nii.gz,b.nii.gz,1.5\n", r"triplets.csv line 2: h = 1.5 is outside \[0, 1\]"),
    ("ref,p0,p1,h\nr.nii.gz,a.nii.gz,b.nii.gz,0\nr.nii.gz,a.nii.gz,b.nii.gz,yes\n", r"triplets.csv line 3: h = 'yes' is not a number"),
    ("ref,p0,p1,h\nr.nii.gz,a.nii.gz,missing.nii.gz,0\n", r"missing.nii.gz: file not found"),
    ("ref,p0,p1,h\n", "no rows after the header"),
])
def test_triplet_reader_errors_name_file_and_line(tmp_path, text, match):
    _write_triplets(tmp_path, text)
    with pytest.raises(BenchmarkInputError, match=match):
        read_triplets(tmp_path)


def test_triplet_reader_needs_a_slice_for_volumes(tmp_path):
    _write_triplets(tmp_path, "ref,p0,p1,h\nr.nii.gz,a.nii.gz,b.nii.gz,0\n", shape=(32, 32, 5))
    with pytest.raises(BenchmarkInputError, match=r"r.nii.gz \(triplets.csv line 2\): a 3D volume .* needs a slice index"):
        read_triplets(tmp_path)
    (tmp_path / "triplets.csv").write_text("ref,p0,p1,h,slice\nr.nii.gz,a.nii.gz,b.nii.gz,0,2\n")
    assert read_triplets(tmp_path)[0].ref.shape == (1, 32, 32)
    with pytest.raises(BenchmarkInputError, match="triplets.csv: file not found"):
        read_triplets(tmp_path / "nowhere")


def test_ratings_reader_pairs_real_and_synthetic(tmp_path):
    _write_triplets(tmp_path, "")
    (tmp_path / "ratings.csv").write_text("image,reference,rating,rater\nr.nii.gz,r.nii.gz,6,A\na.nii.gz,r.nii.gz,3,A\nb.nii.gz,r.nii.gz,5,A\n")
    pairs = read_ratings(tmp_path)
    assert [(p.synthetic.name, p.rating_real, p.rating_synthetic) for p in pairs] == [("a.nii.gz", 6, 3), ("b.nii.gz", 6, 5)]
    (tmp_path / "ratings.csv").write_text("image,reference,rating,rater\na.nii.gz,r.nii.gz,3,A\n")
    with pytest.raises(BenchmarkInputError, match=r"ratings.csv line 2: no rating of the real image r.nii.gz by A"):
        read_ratings(tmp_path)
    (tmp_path / "ratings.csv").write_text("image,reference,rating\nr.nii.gz,r.nii.gz,six\n")
    with pytest.raises(BenchmarkInputError, match=r"ratings.csv line 2: rating = 'six' is not a number"):
        read_ratings(tmp_path)


# ---- learned weights ------------------------------------------------------------------------------------------------
def test_learn_weights_short_run(vgg):
    g = torch.Generator().manual_seed(0)
    triplets = []
    for i in range(12):
        ref = torch.randn(1, 32, 32, generator=g)
        noise = torch.randn(1, 32, 32, generator=g)
        weak, strong = (ref + 0.1 * noise).numpy(), (ref + 0.6 * noise).numpy()
        p0, p1, h = (weak, strong, 0.0) if i % 2 else (strong, weak, 1.0)
        triplets.append(Triplet(ref=ref.numpy(), p0=p0, p1=p1, h=h))
    w = learn_weights(triplets, vgg, steps=20, batch_size=8)
    assert [tuple(x.shape) for x in w] == [(c,) for c in vgg.channels((32, 32))]
    assert all((x >= 0).all() for x in w) and any((x != 1).any() for x in w)
    d0, d1 = triplet_distances(triplets, vgg, w)
    assert twoafc_score(d0, d1, [t.h for t in triplets]) == 1.0


# ---- the loss ------------------------------------------------------------------------------------------------------------
def test_coper_loss_reaches_the_generator_not_the_network(resnet):
    generator = nn.Conv2d(2, 2, 3, padding=1)  # 2 target channels (eq. 4: m)
    loss_fn = CoPerLoss(resnet, feature_norm="none")
    loss_fn.train()  # a parent module's .train() must not switch the frozen network's BatchNorm to training
    assert not resnet.training
    x = torch.randn(2, 2, 32, 32, requires_grad=True)
    target = torch.randn(2, 2, 32, 32)
    loss = loss_fn(generator(x), target)
    loss.backward()
    assert loss > 0 and generator.weight.grad is not None and generator.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in resnet.parameters())
    # eq. 3-4 by hand: mean over channels j and levels i of the per-level mean squared feature difference
    with torch.no_grad():
        pred = generator(x)
        expect = sum(((a - b) ** 2).mean() for j in range(2) for a, b in zip(resnet(pred[:, j:j + 1]), resnet(target[:, j:j + 1]))) / (2 * 5)
        torch.testing.assert_close(loss_fn(pred, target), expect)
        assert float(loss_fn(target, target)) == 0.0


def _toy_extractor():
    """Two 'layers' of a known network: A = [x, 2x] (2 channels, full grid), B = 3·avgpool2(x) (1 channel, half grid)."""
    from benchmark.perceptual.metric import FeatureExtractor

    return FeatureExtractor(nn.Identity(), lambda x: [torch.cat([x, 2 * x], dim=1), 3 * nn.functional.avg_pool2d(x, 2)],
                            in_channels=1, name="toy", relu=True)


def test_coper_loss_readings_of_eq3_on_known_values():
    """ŷ = 1, y = 2 everywhere. Layer A: φ(y) = [2, 4], φ(ŷ) = [1, 2]: mean squared difference 2.5, target energy 10;
    layer B: 6 vs 3: 9, energy 36. none (eq. 3-4 as printed) = (2.5 + 9) / 2; energy = (2.5/10 + 9/36) / 2 = 0.25;
    unit: both images give parallel channel vectors, distance 0."""
    ext = _toy_extractor()
    pred, target = torch.ones(2, 1, 4, 4), torch.full((2, 1, 4, 4), 2.0)
    values = {norm: float(CoPerLoss(ext, feature_norm=norm)(pred, target)) for norm in ("none", "energy", "unit")}
    assert values == pytest.approx({"none": 5.75, "energy": 0.25, "unit": 0.0}, abs=1e-6)
    # two target channels (eq. 4's m): each its own pass; the second identical to its target adds 0 over m n = 4 terms
    two = CoPerLoss(ext, feature_norm="none")(torch.cat([pred, target], 1), torch.cat([target, target], 1))
    assert float(two) == pytest.approx(11.5 / 4)
    with pytest.raises(ValueError, match="feature_norm must be one of energy, unit, none"):
        CoPerLoss(ext, feature_norm="lpips")


def test_coper_loss_unit_reading_is_the_coper_metric_per_layer(vgg):
    """feature_norm unit = the CoPer metric with weights one (LPIPS eq. 1) averaged over layers and the batch."""
    fake, real = _images(seed=3)
    loss = CoPerLoss(vgg, feature_norm="unit")(fake, real)
    with torch.no_grad():
        expect = coper_distance(fake, real, vgg).mean() / len(vgg(real))
    torch.testing.assert_close(loss, expect)


def test_default_coper_loss_stays_the_size_of_the_l1_term_on_a_network_with_large_deep_features():
    """A VGG-16 whose conv weights are scaled by 1.6 (deep activations ~100x the shallow ones, as the smoke
    SwAV-trained VGG-16: relu1_2 RMS 0.7 ... relu5_3 83): eq. 3 as printed makes the CoPer term hundreds of times the L1
    term of a blurred, noisy prediction; the default reading keeps the two within 10x, whatever the network's scale."""
    from benchmark.methods import get_method

    ext = random_extractor("vgg16_unet", size="smoke", in_channels=1, seed=0)
    with torch.no_grad():
        for m in ext.network.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(1.6)
    g = torch.Generator().manual_seed(0)
    real = nn.functional.avg_pool2d(torch.randn(4, 1, 40, 40, generator=g), 9, stride=1)[..., :32, :32]
    real = real / real.std()  # smooth, z-scored-like slices
    fake = nn.functional.avg_pool2d(real, 3, stride=1, padding=1) + 0.2 * torch.randn(real.shape, generator=g)  # blurred, noisy
    with torch.no_grad():
        rms = [float(f.pow(2).mean().sqrt()) for f in ext(real)]
    assert rms[-1] > 50 * rms[0], rms  # the premise: deep features far larger than shallow ones
    l1 = float((fake - real).abs().mean())
    default = get_method("l1+coper").make_config().feature_norm
    term = {norm: float(CoPerLoss(ext, feature_norm=norm)(fake, real)) for norm in ("none", default)}
    assert 0.1 < term[default] / l1 < 10, (term, l1)
    assert term["none"] / l1 > 100, (term, l1)  # what the default guards against


def test_the_methods_feature_norms_are_the_losss():
    from benchmark.methods.synthesis_losses import FEATURE_NORMS as CONFIG_NORMS
    from benchmark.perceptual.metric import FEATURE_NORMS

    assert CONFIG_NORMS == FEATURE_NORMS


# ---- checkpoints ------------------------------------------------------------------------------------------------------------
def _checkpoint(path: Path, backbone="resnet_unet", channels=(4, 4)):
    torch.manual_seed(5)
    net = build_backbone(backbone, in_channels=channels[0], out_channels=channels[1], size=SMOKE_SIZE, roi=(64, 64))
    job = {"method": "swav", "backbone": backbone, "backbone_size": asdict(SMOKE_SIZE), "roi": [64, 64], "pretrain_channels": list(channels)}
    torch.save({"backbone": net.state_dict(), "key": "k", "losses": [1.0], "job": job}, path)
    return net.eval()


@pytest.mark.parametrize("backbone", ["resnet_unet", "vgg_unet"])
def test_load_checkpoint_in_the_cache_format(tmp_path, backbone):
    net = _checkpoint(tmp_path / "k.pt", backbone)
    ext = load_extractor(tmp_path / "k.pt")
    assert ext.in_channels == 4 and ext.name == f"swav-{backbone}"
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        theirs = net.encoder_features(x.repeat(1, 4, 1, 1))[:5]
        for a, b in zip(ext(x), theirs):
            torch.testing.assert_close(a, b)


def test_load_extractor_errors(tmp_path):
    with pytest.raises(BenchmarkInputError, match="no such checkpoint"):
        load_extractor(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_text("not torch")
    with pytest.raises(BenchmarkInputError, match="bad.pt: could not be read"):
        load_extractor(tmp_path / "bad.pt")
    torch.save({"backbone": {}}, tmp_path / "nojob.pt")
    with pytest.raises(BenchmarkInputError, match="nojob.pt: expected a suite checkpoint"):
        load_extractor(tmp_path / "nojob.pt")
    with pytest.raises(BenchmarkInputError, match="rand:swin_unetr: no CoPer features"):
        load_extractor("rand:swin_unetr")
