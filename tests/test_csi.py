"""Cross-patient source identification (benchmark/methods/csi.py): mixing, loss, config, method."""
from __future__ import annotations

import math

import pytest
import torch

from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.blocks.losses import l1_plus_l2, source_identification_loss
from benchmark.blocks.mixing import convex_weights, foreground_overlap, mix_sources
from benchmark.methods.csi import CrossPatientSI, CSIConfig


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- convex weights --------------------------------------------------------------------------
def test_convex_weights_in_unit_interval_and_sum_to_one():
    """Every mixture's weights lie in [0, 1] and sum to 1 (eq. 12 convexity)."""
    w = convex_weights((64, 3, 4), generator=_gen())
    assert w.shape == (64, 3, 4)
    assert (w >= 0).all() and (w <= 1).all()
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(64, 3))


def test_convex_weights_are_random_and_uniform_on_simplex():
    """Weights vary between draws and average 1/Ñ per component (uniform on the simplex)."""
    w = convex_weights((20000, 3), generator=_gen(1))
    assert w.std(dim=0).min() > 0.1
    torch.testing.assert_close(w.mean(dim=0), torch.full((3,), 1 / 3), atol=0.01, rtol=0)
    # Dirichlet(1,1,1): each marginal is Beta(1, 2) with variance 1/18.
    torch.testing.assert_close(w.var(dim=0), torch.full((3,), 1 / 18), atol=0.005, rtol=0)


# ---- mixing ---------------------------------------------------------------------------------
def _pool(b=4, n=7, c=2, h=5, w=6, seed=0):
    return torch.randn(b, n, c, h, w, generator=_gen(100 + seed))


def test_mix_sources_target_in_every_mixture():
    """index[..., 0] == 0: the target (pool slot 0) is part of every mixture."""
    _, _, index = mix_sources(_pool(), sources_per_mixture=3, num_mixtures=3, generator=_gen())
    assert index.shape == (4, 3, 3)
    assert (index[..., 0] == 0).all()


@pytest.mark.parametrize("m,k", [(2, 3), (3, 3), (2, 2), (3, 2)])
def test_mix_sources_non_target_indices_distinct_and_nonzero(m, k):
    """Non-target sources are never the target and never repeated across the mixtures of a sample."""
    n = 1 + m * (k - 1)
    pool = _pool(b=16, n=n)
    for seed in range(5):
        _, _, index = mix_sources(pool, sources_per_mixture=k, num_mixtures=m, generator=_gen(seed))
        others = index[..., 1:].reshape(16, -1)
        assert (others >= 1).all() and (others < n).all()
        for row in others:
            assert len(set(row.tolist())) == row.numel()


def test_mix_sources_equals_weighted_sum_of_indexed_pool():
    """Each mixture is exactly sum_j w_j * pool[index_j] (recomputed by hand)."""
    pool = _pool()
    mixtures, weights, index = mix_sources(pool, sources_per_mixture=3, num_mixtures=2, generator=_gen(3))
    assert mixtures.shape == (4, 2, 2, 5, 6)
    assert weights.shape == (4, 2, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 2))
    for b in range(4):
        for m in range(2):
            expected = sum(weights[b, m, j] * pool[b, index[b, m, j]] for j in range(3))
            torch.testing.assert_close(mixtures[b, m], expected)


def test_mix_sources_constant_sources_give_convex_combination_of_constants():
    """With source i filled with value i, a mixture is the scalar sum_j w_j * index_j."""
    pool = torch.arange(7.0).view(1, 7, 1, 1, 1).expand(3, 7, 1, 4, 4).clone()
    mixtures, weights, index = mix_sources(pool, sources_per_mixture=3, num_mixtures=2, generator=_gen(5))
    expected = (weights * index.float()).sum(-1)  # [B, M]
    torch.testing.assert_close(mixtures[..., 0, 0, 0], expected)
    assert (mixtures == mixtures[..., :1, :1, :1]).all()  # spatially constant


def test_mix_sources_same_seed_same_output_different_seed_different():
    """Same generator seed -> identical mixtures; another seed -> different mixtures."""
    pool = _pool()
    a = mix_sources(pool, sources_per_mixture=3, num_mixtures=2, generator=_gen(7))
    b = mix_sources(pool, sources_per_mixture=3, num_mixtures=2, generator=_gen(7))
    c = mix_sources(pool, sources_per_mixture=3, num_mixtures=2, generator=_gen(8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[1], c[1])


def test_mix_sources_uses_all_non_target_slots_over_draws():
    """Over many draws every non-target pool slot gets used (a random, not fixed, assignment)."""
    pool = _pool(b=1, n=9)
    seen = set()
    for seed in range(50):
        _, _, index = mix_sources(pool, sources_per_mixture=3, num_mixtures=2, generator=_gen(seed))
        seen |= set(index[..., 1:].flatten().tolist())
    assert seen == set(range(1, 9))


# ---- loss -----------------------------------------------------------------------------------
def test_si_loss_terms_have_eq4_l1_to_l2_ratio():
    """SI eq. 4 is ‖d‖₁ + ‖d‖₂: the loss times the voxel count n is exactly that sum per image, so the two
    terms keep the paper's ratio ‖d‖₁ : ‖d‖₂ (√n : 1 for a constant error) at every image size; MAE + RMSE
    (``l1_plus_l2``) would weight them 1 : 1 instead."""
    for side in (2, 16, 64):
        n = side * side
        prediction = torch.full((1, 1, side, side), 0.5)
        target = torch.zeros_like(prediction)
        l1, l2 = 0.5 * n, 0.5 * math.sqrt(n)  # the two norms of eq. 4
        torch.testing.assert_close(source_identification_loss(prediction, target) * n, torch.tensor(l1 + l2))
        torch.testing.assert_close(l1_plus_l2(prediction, target), torch.tensor(1.0))  # the old, 1:1 weighting
    # a non-constant error, two images, two channels (one image = all its channels), batch mean
    target = torch.zeros(2, 2, 2, 2)
    prediction = torch.tensor([[[[1.0, -1.0], [3.0, -3.0]], [[0.0, 0.0], [0.0, 0.0]]],
                               [[[2.0, 2.0], [2.0, 2.0]], [[2.0, 2.0], [2.0, 2.0]]]])
    per_image = [(8 + math.sqrt(20)) / 8, (16 + math.sqrt(32)) / 8]
    torch.testing.assert_close(source_identification_loss(prediction, target), torch.tensor(sum(per_image) / 2))
    x = torch.randn(3, 2, 4, 4, generator=_gen())
    assert source_identification_loss(x, x).item() == 0.0


def test_l1_plus_l2_hand_computed():
    """The Genesis baselines' MAE + RMSE per image, averaged over the batch, on a hand-computed example."""
    target = torch.zeros(2, 1, 2, 2)
    prediction = torch.tensor([[[[1.0, -1.0], [3.0, -3.0]]], [[[2.0, 2.0], [2.0, 2.0]]]])
    # image 0: MAE = 2, RMSE = sqrt((1+1+9+9)/4) = sqrt(5); image 1: MAE = 2, RMSE = 2.
    expected = ((2 + math.sqrt(5)) + (2 + 2)) / 2
    torch.testing.assert_close(l1_plus_l2(prediction, target), torch.tensor(expected))


def test_l1_plus_l2_zero_for_identical_and_symmetric():
    """The loss is 0 for identical inputs and symmetric in its arguments."""
    x = torch.randn(3, 2, 4, 4, generator=_gen())
    y = torch.randn(3, 2, 4, 4, generator=_gen(1))
    assert l1_plus_l2(x, x).item() == 0.0
    torch.testing.assert_close(l1_plus_l2(x, y), l1_plus_l2(y, x))


# ---- config ---------------------------------------------------------------------------------
def test_config_defaults_match_paper():
    """Paper defaults (section 5.2): N = 5, Ñ = 3, M̃ = 2."""
    cfg = CSIConfig()
    assert (cfg.pool_size, cfg.sources_per_mixture, cfg.num_mixtures) == (5, 3, 2)


@pytest.mark.parametrize("pool,k,m", [(4, 3, 2), (6, 3, 3), (3, 2, 3), (8, 4, 3)])
def test_config_rejects_too_small_pool(pool, k, m):
    """pool_size < 1 + M̃(Ñ−1) is rejected (not enough distinct sources)."""
    with pytest.raises(ValueError, match="pool_size"):
        CSIConfig(pool_size=pool, sources_per_mixture=k, num_mixtures=m)


@pytest.mark.parametrize("pool,k,m", [(5, 3, 2), (7, 3, 3), (4, 2, 3), (10, 4, 3)])
def test_config_accepts_exactly_enough_sources(pool, k, m):
    """pool_size >= 1 + M̃(Ñ−1) is accepted."""
    CSIConfig(pool_size=pool, sources_per_mixture=k, num_mixtures=m)


@pytest.mark.parametrize("m", [1, 0])
def test_config_rejects_fewer_than_two_mixtures(m):
    """num_mixtures < 2 is rejected (section 3.3: the target must be identifiable)."""
    with pytest.raises(ValueError, match="num_mixtures"):
        CSIConfig(pool_size=20, num_mixtures=m)


# ---- foreground overlap ---------------------------------------------------------------------
def test_foreground_overlap_true_and_false():
    """Slices overlap iff some pixel is non-zero in both (any channel)."""
    a = torch.zeros(2, 4, 4)
    b = torch.zeros(2, 4, 4)
    a[0, :2, :2] = 1.0
    b[1, 2:, 2:] = 1.0
    assert foreground_overlap(a, b) is False
    b[1, 1, 1] = -0.5  # negative intensities are foreground too; different channel, same pixel
    assert foreground_overlap(a, b) is True
    assert foreground_overlap(a, torch.zeros(2, 4, 4)) is False


# ---- the method -----------------------------------------------------------------------------
def _method(cfg: CSIConfig, c: int = 1, seed: int = 0) -> CrossPatientSI:
    cin, cout = CrossPatientSI.backbone_channels(cfg, in_channels=c)
    torch.manual_seed(seed)
    backbone = build_backbone("unet2d", in_channels=cin, out_channels=cout, size=SMOKE_SIZE, roi=(32, 32))
    return CrossPatientSI(backbone, cfg, in_channels=c)


@pytest.mark.parametrize("c,m", [(1, 2), (4, 2), (2, 3)])
def test_backbone_channels_are_c_times_m(c, m):
    """Backbone input = C×M̃ channels, output = C (section 5.4)."""
    cfg = CSIConfig(pool_size=1 + m * 2, num_mixtures=m)
    assert CrossPatientSI.backbone_channels(cfg, in_channels=c) == (c * m, c)


def test_data_spec_asks_for_cross_patient_pool():
    """CSI asks for source pools of N slices from different patients."""
    spec = CrossPatientSI.data_spec(CSIConfig(pool_size=9))
    assert (spec.kind, spec.pool_size, spec.same_patient) == ("source_pool", 9, False)


def test_forward_loss_is_eq4_against_target_slice():
    """The loss is eq. 4 between the backbone's output on the stacked mixtures and pool[:, 0]."""
    cfg = CSIConfig()
    method = _method(cfg, c=2)
    pool = torch.randn(2, 5, 2, 32, 32, generator=_gen(11))
    loss = method({"sources": pool}, generator=_gen(3))["loss"]
    mixtures, _, _ = mix_sources(pool, sources_per_mixture=3, num_mixtures=2, generator=_gen(3))
    with torch.no_grad():
        prediction = method.backbone(mixtures.reshape(2, 4, 32, 32))
    torch.testing.assert_close(loss.detach(), source_identification_loss(prediction, pool[:, 0]))


def test_forward_loss_depends_on_sources_per_mixture():
    """Same network and draws, different Ñ -> different loss (sources_per_mixture is used)."""
    pool = torch.randn(2, 9, 1, 32, 32, generator=_gen(12))
    losses = []
    for k in (2, 3, 5):
        method = _method(CSIConfig(pool_size=9, num_mixtures=2, sources_per_mixture=k), c=1)
        with torch.no_grad():
            losses.append(method({"sources": pool}, generator=_gen(0))["loss"].item())
    assert len({round(v, 6) for v in losses}) == 3, losses


@pytest.mark.parametrize("m,c", [(2, 1), (3, 1), (4, 2)])
def test_forward_feeds_all_mixtures_to_backbone(m, c):
    """The backbone receives M̃ mixtures x C channels, and the loss changes with num_mixtures."""
    cfg = CSIConfig(pool_size=1 + 2 * m, num_mixtures=m, sources_per_mixture=3)
    method = _method(cfg, c=c)
    seen = []
    handle = method.backbone.register_forward_pre_hook(lambda _mod, args: seen.append(args[0].shape))
    pool = torch.randn(2, cfg.pool_size, c, 32, 32, generator=_gen(13))
    with torch.no_grad():
        loss = method({"sources": pool}, generator=_gen(0))["loss"]
    handle.remove()
    assert seen == [torch.Size([2, m * c, 32, 32])]
    assert torch.isfinite(loss)
