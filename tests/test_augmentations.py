"""Fine-tuning augmentations (benchmark/augmentations.py): mixup and CarveMix, 2D and 3D."""
from __future__ import annotations

import pytest
import torch

from benchmark.augmentations import carvemix, mixup, sample_mixup_lambda
from benchmark.blocks.carvemix import signed_distance


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ball(shape, radius, center):
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    return torch.sqrt(sum((g - c) ** 2 for g, c in zip(grids, center))) <= radius


# ---- mixup ------------------------------------------------------------------------------------------
def _solve_pair(out: torch.Tensor, a: torch.Tensor, candidates: torch.Tensor) -> tuple[int, float]:
    """The partner j and λ with out = λ·a + (1−λ)·candidates[j] (least squares; exact partner has ~0 residual)."""
    best = None
    for j, b in enumerate(candidates):
        diff = a - b
        if diff.abs().max() == 0:
            continue
        lam = float(((out - b) * diff).sum() / (diff * diff).sum())
        residual = float((out - (lam * a + (1 - lam) * b)).abs().max())
        if best is None or residual < best[2]:
            best = (j, lam, residual)
    assert best[2] < 1e-5, f"output is no mix of its image with another batch image (residual {best[2]})"
    return best[0], best[1]


@pytest.mark.parametrize("spatial", [(8, 8), (4, 6, 5)])
def test_mixup_mixes_images_and_targets_with_the_same_lambda(spatial):
    """Each output image is λ·a + (1−λ)·b for a batch partner b, λ ∈ [0, 1], and its target uses the same λ and b."""
    b = 6
    image = torch.randn(b, 2, *spatial, generator=_gen(1))
    classes = torch.randint(0, 3, (b, *spatial), generator=_gen(2))
    target = torch.nn.functional.one_hot(classes, 3).movedim(-1, 1).float()  # [B, 3, *spatial]
    out_image, out_target = mixup(image, target, alpha=0.4, generator=_gen(3))
    assert out_image.shape == image.shape and out_target.shape == target.shape
    partners = []
    for i in range(b):
        if torch.allclose(out_image[i], image[i], atol=1e-6):  # λ = 1 or paired with itself
            partners.append(i)
            if not torch.allclose(out_target[i], target[i], atol=1e-6):  # then the target must be unmixed too,
                j, lam = _solve_pair(out_target[i], target[i], target)  # unless λ ≈ 1 up to rounding
                assert lam > 1 - 1e-5
            continue
        j, lam = _solve_pair(out_image[i], image[i], image)
        partners.append(j)
        assert 0.0 <= lam <= 1.0
        torch.testing.assert_close(out_target[i], lam * target[i] + (1 - lam) * target[j], atol=1e-5, rtol=0)
    torch.testing.assert_close(out_target.sum(dim=1), torch.ones(b, *spatial))  # still sums to one per voxel
    assert len(set(partners)) > 1


def test_mixup_is_exactly_the_convex_combination_with_the_drawn_lambda():
    """With the λ and permutation drawn from the same seed (λ first, then π), the output is exact."""
    image = torch.randn(5, 1, 6, 6, generator=_gen(4))
    target = torch.rand(5, 2, 6, 6, generator=_gen(5))
    out_image, out_target = mixup(image, target, alpha=1.0, generator=_gen(6))
    g = _gen(6)
    lam = sample_mixup_lambda(5, alpha=1.0, generator=g).float().view(5, 1, 1, 1)
    perm = torch.randperm(5, generator=g)
    torch.testing.assert_close(out_image, lam * image + (1 - lam) * image[perm], rtol=0, atol=1e-6)
    torch.testing.assert_close(out_target, lam * target + (1 - lam) * target[perm], rtol=0, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_mixup_lambda_is_beta_alpha_alpha(alpha):
    """λ ~ Beta(α, α): in [0, 1], mean 1/2, variance 1 / (4(2α + 1)); α shapes the distribution."""
    lam = sample_mixup_lambda(20_000, alpha=alpha, generator=_gen(7))
    assert lam.min() >= 0 and lam.max() <= 1
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.05)


def test_mixup_alpha_changes_the_lambda_distribution_and_seed_fixes_it():
    small = sample_mixup_lambda(4000, alpha=0.2, generator=_gen(8))
    large = sample_mixup_lambda(4000, alpha=8.0, generator=_gen(8))
    # α = 0.2: mostly near 0 or 1; α = 8: mostly near 1/2
    assert ((small < 0.1) | (small > 0.9)).float().mean() > 0.5
    assert ((large - 0.5).abs() < 0.2).float().mean() > 0.8
    image, target = torch.randn(4, 1, 4, 4, generator=_gen(1)), torch.rand(4, 2, 4, 4, generator=_gen(2))
    a = mixup(image, target, alpha=0.4, generator=_gen(9))
    b = mixup(image, target, alpha=0.4, generator=_gen(9))
    c = mixup(image, target, alpha=0.4, generator=_gen(10))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    with pytest.raises(ValueError):
        sample_mixup_lambda(3, alpha=0.0, generator=_gen(0))
    with pytest.raises(ValueError):
        mixup(image, target.long(), alpha=0.4, generator=_gen(0))


# ---- CarveMix --------------------------------------------------------------------------------------
def _carvemix_batch(spatial, b=5):
    """Cases whose images are offset by 100·case (identifiable voxel sources) with one ball lesion each, labels 1..3."""
    image = torch.randn(b, 2, *spatial, generator=_gen(11)) + 100.0 * torch.arange(b).view(b, 1, *[1] * len(spatial))
    label = torch.zeros(b, 1, *spatial)
    for i in range(b):
        center = [s / 4 + (i * 7) % (s // 2) for s in spatial]
        lesion = _ball(spatial, spatial[0] / 6 + i % 2, center)
        label[i, 0][lesion] = float(1 + i % 3)
    return image, label


@pytest.mark.parametrize("spatial", [(48, 48), (24, 24, 24)])
def test_carvemix_pastes_the_donor_region_into_the_recipient(spatial):
    """Every voxel comes from the recipient or from ONE donor; the donor voxels form the set {D_donor ≤ λ} with
    λ ∈ [−|D_min|/2, |D_min|] (CarveMix eq. 3); labels are pasted the same way (2D and 3D)."""
    image, label = _carvemix_batch(spatial)
    out_image, out_label = carvemix(image, label, generator=_gen(12))
    assert out_image.shape == image.shape and out_label.shape == label.shape
    case_of_voxel = torch.round(out_image[:, 0] / 100.0)  # [B, *spatial]: which case each output voxel came from
    mixed = 0
    for i in range(image.shape[0]):
        sources = set(case_of_voxel[i].unique().long().tolist())
        assert sources <= {i} | set(range(image.shape[0])) and len(sources - {i}) <= 1
        if sources == {i}:  # paired with itself: unchanged
            assert torch.equal(out_image[i], image[i]) and torch.equal(out_label[i], label[i])
            continue
        (j,) = sources - {i}
        mixed += 1
        region = case_of_voxel[i] == j  # [*spatial]
        # inside the region: donor image (all channels) and donor label; outside: the recipient's
        assert torch.equal(out_image[i][:, region], image[j][:, region])
        assert torch.equal(out_image[i][:, ~region], image[i][:, ~region])
        assert torch.equal(out_label[i, 0][region], label[j, 0][region])
        assert torch.equal(out_label[i, 0][~region], label[i, 0][~region])
        # the region is a sub-level set of the donor's signed distance with λ from eq. 3
        d = signed_distance(label[j, 0] > 0)
        size = abs(d.min().item())
        assert d[region].max() < d[~region].min()
        assert -size / 2 - 1 <= d[region].max() <= size
        assert region[d <= -size / 2].all()  # the lesion core is always pasted
    assert mixed >= 2


def test_carvemix_grows_and_shrinks_the_donor_lesion():
    """Over seeds, some pasted regions contain the whole donor lesion plus a margin (λ > 0), some lie inside it (λ < 0)."""
    image, label = _carvemix_batch((40, 40), b=3)
    grew = shrank = 0
    for seed in range(16):
        out_image, _ = carvemix(image, label, generator=_gen(seed))
        source = torch.round(out_image[:, 0] / 100.0)
        for i in range(3):
            donors = set(source[i].unique().long().tolist()) - {i}
            if not donors:
                continue
            (j,) = donors
            region, lesion = source[i] == j, label[j, 0] > 0
            grew += bool((region & lesion).equal(lesion) and region.sum() > lesion.sum())
            shrank += bool((region & lesion).equal(region) and region.sum() < lesion.sum())
    assert grew >= 3 and shrank >= 3


def test_carvemix_donor_without_lesion_pastes_nothing_and_is_seeded():
    image = torch.randn(2, 1, 16, 16, generator=_gen(1))
    label = torch.zeros(2, 1, 16, 16)
    out_image, out_label = carvemix(image, label, generator=_gen(2))
    assert torch.equal(out_image, image) and torch.equal(out_label, label)
    image, label = _carvemix_batch((32, 32))
    a = carvemix(image, label, generator=_gen(3))
    b = carvemix(image, label, generator=_gen(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert any(not torch.equal(carvemix(image, label, generator=_gen(s))[0], a[0]) for s in range(4, 8))
    with pytest.raises(ValueError):
        carvemix(image, label[:, 0], generator=_gen(0))
