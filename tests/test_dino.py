"""DINO (Caron et al. 2021; the CSM paper's baseline): the loss against the authors' code and a hand-computed value,
the centre as an EMA of the teacher's outputs, a teacher that gets no gradient and moves by EMA exactly, the
schedules, the head and the 3D multi-crop views."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.backbones import BackboneSize, build_backbone
from benchmark.blocks.dino import DINOHead, dino_loss, teacher_momentum, teacher_temperature
from benchmark.blocks.multicrop3d import DINOViewsConfig, dino_views, gaussian_blur_3d, local_view_size, resized_crop_3d
from benchmark.blocks.tokens import grid_position_embedding
from benchmark.methods import Recipe, get_method
from dist_utils import run_distributed  # tests/ is on sys.path (no package), also in the spawned workers

TINY = BackboneSize(vit_dim=24, vit_depth=1, vit_heads=2, vit_patch=8, unetr_feature_size=8)
ROI = (32, 32, 32)
SMALL = dict(out_dim=32, hidden_dim=32, bottleneck_dim=16, local_crops_number=2)  # a fast head; the paper's is K = 65536


def _method(backbone: str = "vit", **overrides):
    cls = get_method("dino")
    torch.manual_seed(0)
    net = build_backbone(backbone, in_channels=2, out_channels=2, size=TINY, roi=ROI)
    return cls(net, cls.make_config({**SMALL, **overrides}), in_channels=2)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    return {"image": torch.randn(3, 2, *ROI, generator=torch.Generator().manual_seed(seed))}


def _reference_dino_loss(student_output, teacher_output, center, *, ncrops, student_temp, temp):
    """facebookresearch/dino main_dino.py DINOLoss.forward, verbatim but for the epoch schedule and the centre update."""
    student_out = student_output / student_temp
    student_out = student_out.chunk(ncrops)
    teacher_out = F.softmax((teacher_output - center) / temp, dim=-1)
    teacher_out = teacher_out.detach().chunk(2)
    total_loss = 0
    n_loss_terms = 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
            total_loss += loss.mean()
            n_loss_terms += 1
    total_loss /= n_loss_terms
    return total_loss


def test_loss_equals_the_authors_code():
    g = torch.Generator().manual_seed(0)
    student, teacher, center = torch.randn(5 * 4, 7, generator=g), torch.randn(2 * 4, 7, generator=g), torch.randn(1, 7, generator=g)
    ours = dino_loss(student, teacher, center=center, n_global=2, student_temp=0.1, teacher_temp=0.04)
    ref = _reference_dino_loss(student, teacher, center, ncrops=5, student_temp=0.1, temp=0.04)
    torch.testing.assert_close(ours, ref)


def test_loss_is_the_cross_entropy_of_centred_sharpened_teacher_and_student_on_a_known_example():
    """B = 1, K = 2, views (global 1, global 2, local): teacher logits (1, 0) and (0, 1), centre (0.5, 0.5), τ_t = 0.5,
    so P_t = softmax(±1 / 0.5) = (σ(2), σ(−2)) and its mirror; student logits chosen so P_s = (1/2, 1/2) on global 1,
    softmax((0.1, 0) / 0.1) = (σ(1), σ(−1)) on global 2 and the local view. The loss is the mean of the 4 pairs of
    different views: (t1, s2), (t1, s3), (t2, s1), (t2, s3)."""
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    student = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.1, 0.0]], dtype=torch.float64)
    loss = dino_loss(student, teacher, center=torch.tensor([[0.5, 0.5]], dtype=torch.float64), n_global=2, student_temp=0.1, teacher_temp=0.5)
    sig = lambda z: 1.0 / (1.0 + math.exp(-z))  # noqa: E731
    t1, t2 = (sig(2), sig(-2)), (sig(-2), sig(2))
    s1, s2 = (0.5, 0.5), (sig(1), sig(-1))
    ce = lambda p, q: -sum(a * math.log(b) for a, b in zip(p, q))  # noqa: E731
    expected = (ce(t1, s2) + ce(t1, s2) + ce(t2, s1) + ce(t2, s2)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_loss_rejects_views_that_do_not_match_the_batch():
    with pytest.raises(ValueError, match="global views"):
        dino_loss(torch.randn(7, 4), torch.randn(4, 4), center=torch.zeros(1, 4), n_global=2, student_temp=0.1, teacher_temp=0.04)


def test_centre_is_an_ema_of_the_teacher_outputs():
    """c_1 = 0.9·0 + 0.1·mean(g_t of step 1), c_2 = 0.9·c_1 + 0.1·mean(g_t of step 2); each applied before the next
    forward, as DINO applies its update at the end of a step. A no-grad forward changes nothing."""
    method = _method()
    enc = method.backbone.token_encoder
    means = []
    for step in range(2):
        with torch.no_grad():  # the teacher's outputs of this step, from the same views
            views = dino_views(_batch(step)["image"], method.cfg, patch=enc.patch, generator=torch.Generator().manual_seed(step))
            tokens = method.teacher_encoder.tokenize(torch.cat(views[:2]))
            b, s, n, d = tokens.shape
            out = method.teacher_head(method.teacher_encoder.encode(tokens.reshape(b, s * n, d)).mean(dim=1))
        means.append(out.mean(dim=0, keepdim=True))
        method(_batch(step), generator=torch.Generator().manual_seed(step))  # no optimiser step: the teacher stays put
    c1 = 0.1 * means[0]  # applied at the start of the second forward
    torch.testing.assert_close(method.center, c1, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        method(_batch(5), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(method.center, c1, rtol=0, atol=0)  # a no-grad forward applies nothing
    method(_batch(2), generator=torch.Generator().manual_seed(2))  # applies the pending centre of the second step
    torch.testing.assert_close(method.center, 0.9 * c1 + 0.1 * means[1], rtol=1e-5, atol=1e-7)


def test_teacher_gets_no_gradient_and_moves_by_ema_exactly():
    """θ_t ← λθ_t + (1 − λ)θ_s after each step, λ = 0.996 at step 0 of the cosine schedule; the teacher never has a grad."""
    method = _method()
    method.configure_schedule(recipe=Recipe(steps=10, batch_size=3, lr=0.1), steps=10)
    teacher_params = list(method.teacher_encoder.parameters()) + list(method.teacher_head.parameters())
    assert all(not p.requires_grad for p in teacher_params)
    student_enc = method.backbone.token_encoder
    for t, s in zip(method.teacher_encoder.parameters(), student_enc.parameters()):
        assert torch.equal(t, s)  # the teacher starts as the student's copy
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    method(_batch(0), generator=torch.Generator().manual_seed(0))["loss"].backward()
    assert all(p.grad is None for p in teacher_params)
    before = [t.detach().clone() for t in method.teacher_encoder.parameters()]
    optimizer.step()
    after = [s.detach().clone() for s in student_enc.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # the student moved
    # pretrained_state: the teacher after the last step's EMA, under the backbone's names
    transferred = method.pretrained_state()
    method(_batch(1), generator=torch.Generator().manual_seed(1))  # applies the EMA of step 0 (λ = 0.996)
    for (name, t), b, s in zip(method.teacher_encoder.named_parameters(), before, after):
        torch.testing.assert_close(t, 0.996 * b + 0.004 * s, rtol=0, atol=1e-6)
        torch.testing.assert_close(transferred[f"encoder.{name}"], t, rtol=0, atol=0)


def _teacher_outputs(method, batch, seed: int) -> torch.Tensor:
    """The teacher's logits [2B, K] of the global views ``method`` draws from ``generator.manual_seed(seed)``."""
    with torch.no_grad():
        views = dino_views(batch["image"], method.cfg, patch=method.backbone.token_encoder.patch, generator=torch.Generator().manual_seed(seed))
        tokens = method.teacher_encoder.tokenize(torch.cat(views[:2]))
        b, s, n, d = tokens.shape
        return method.teacher_head(method.teacher_encoder.encode(tokens.reshape(b, s * n, d)).mean(dim=1))


def _centre_on_worker(rank: int):
    method = _method()
    batch = {"image": _batch(0)["image"][rank:rank + 2]}  # rows {0, 1} and {1, 2}: each worker its own pair
    outputs = _teacher_outputs(method, batch, seed=rank)
    method(batch, generator=torch.Generator().manual_seed(rank))
    return outputs, method.pending_center.clone()


@pytest.mark.slow  # two spawned processes each importing torch / MONAI / timm: about a minute on a loaded 2-core machine
def test_centre_update_averages_the_teacher_outputs_of_every_worker():
    """DINOLoss.update_center all-reduces: each of two workers holds the mean of BOTH workers' teacher outputs."""
    (out0, c0), (out1, c1) = run_distributed(_centre_on_worker)
    expected = torch.cat([out0, out1]).mean(dim=0, keepdim=True)
    torch.testing.assert_close(c0, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c1, expected, rtol=1e-5, atol=1e-6)


def test_student_transfer_returns_the_trained_backbone():
    method = _method(transfer_network="student")
    method(_batch(0), generator=torch.Generator().manual_seed(0))
    state = method.pretrained_state()
    for key, value in method.backbone.state_dict().items():
        assert torch.equal(state[key], value)


def test_paper_recipe_is_dinos_optimiser_over_the_csm_length_or_the_csm_recipe():
    from benchmark.blocks.recipes import CSM_PAPER_RECIPE

    cls = get_method("dino")
    recipe = cls.recipe_for(cls.make_config())
    assert (recipe.optimizer, recipe.lr, recipe.final_lr, recipe.warmup_epochs) == ("adamw", 5e-4 * 6 / 256, 1e-6, 10)
    assert (recipe.epochs, recipe.batch_size) == (CSM_PAPER_RECIPE.epochs, 6)
    assert cls.recipe_for(cls.make_config({"recipe": "csm"})) == CSM_PAPER_RECIPE


def test_momentum_and_temperature_schedules():
    assert teacher_momentum(0, total=10, base=0.996) == pytest.approx(0.996)
    assert teacher_momentum(5, total=10, base=0.996) == pytest.approx(0.998)
    assert teacher_momentum(10, total=10, base=0.996) == pytest.approx(1.0)
    assert teacher_momentum(7, total=None, base=0.996) == 0.996
    kw = dict(warmup_temp=0.04, temp=0.07, warmup_epochs=30)
    assert teacher_temperature(0, steps_per_epoch=2.0, **kw) == pytest.approx(0.04)
    assert teacher_temperature(3, steps_per_epoch=2.0, **kw) == pytest.approx(0.04 + 0.03 / 29)  # epoch 1 of np.linspace(.04, .07, 30)
    assert teacher_temperature(60, steps_per_epoch=2.0, **kw) == pytest.approx(0.07)
    assert teacher_temperature(0, steps_per_epoch=None, **kw) == 0.07  # no epochs: no warm-up


def test_last_layer_is_frozen_for_the_first_epoch():
    method = _method()
    method.configure_schedule(recipe=Recipe(steps=None, epochs=5, batch_size=3, lr=0.1), steps=10)  # 2 steps per epoch
    assert method.freeze_last_layer_steps == 2
    method(_batch(0), generator=torch.Generator().manual_seed(0))["loss"].backward()
    v = method.head.last_layer.parametrizations.weight.original1
    assert v.grad is None
    assert method.head.mlp[0].weight.grad is not None


class _ReferenceDINOHead(torch.nn.Module):
    """facebookresearch/dino vision_transformer.DINOHead (use_bn=False), verbatim but for the imports."""

    def __init__(self, in_dim, out_dim, norm_last_layer=True, nlayers=3, hidden_dim=2048, bottleneck_dim=256):
        super().__init__()
        layers = [torch.nn.Linear(in_dim, hidden_dim), torch.nn.GELU()]
        for _ in range(nlayers - 2):
            layers += [torch.nn.Linear(hidden_dim, hidden_dim), torch.nn.GELU()]
        layers.append(torch.nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = torch.nn.Sequential(*layers)
        self.apply(self._init_weights)
        with pytest.warns(FutureWarning):  # torch.nn.utils.weight_norm is deprecated for the parametrization
            self.last_layer = torch.nn.utils.weight_norm(torch.nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def _init_weights(self, m):
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                torch.nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


def test_head_equals_the_authors_head_for_the_same_seed():
    torch.manual_seed(0)
    ours = DINOHead(12, 40, hidden_dim=24, bottleneck_dim=8)
    torch.manual_seed(0)
    ref = _ReferenceDINOHead(12, 40, hidden_dim=24, bottleneck_dim=8)
    x = torch.randn(5, 12)
    torch.testing.assert_close(ours(x), ref(x))


def test_head_last_layer_is_weight_normalised_with_a_fixed_gain():
    head = DINOHead(8, 50, hidden_dim=16, bottleneck_dim=4)
    weight = head.last_layer.weight
    torch.testing.assert_close(weight.norm(dim=1), torch.ones(50))
    assert not head.last_layer.parametrizations.weight.original0.requires_grad  # norm_last_layer: g fixed at 1
    logits = head(torch.randn(6, 8))
    assert logits.shape == (6, 50) and logits.abs().max() <= 1 + 1e-5  # cosines of unit vectors
    assert DINOHead(8, 50, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad


# ---- views ----------------------------------------------------------------------------------------------------
def test_views_sizes_and_determinism():
    cfg = DINOViewsConfig(local_crops_number=3)
    x = torch.randn(2, 3, 32, 32, 64)
    views = dino_views(x, cfg, patch=8, generator=torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(2, 3, 32, 32, 64)] * 2 + [(2, 3, 16, 16, 24)] * 3
    again = dino_views(x, cfg, patch=8, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(views, again))
    assert local_view_size((96, 96, 96), ratio=96 / 224, patch=16) == (48, 48, 48)
    assert local_view_size((32, 32, 32), ratio=96 / 224, patch=16) == (16, 16, 16)  # at least one patch


def test_full_volume_crop_is_the_identity_and_the_flip_mirrors_the_last_axis():
    x = torch.randn(2, 1, 6, 8, 10)
    u = torch.full((2, 7), 0.5)  # scale (1, 1), no aspect change, centred
    same = resized_crop_3d(x, size=(6, 8, 10), scale=(1.0, 1.0), u=u, flip=torch.tensor([False, True]))
    torch.testing.assert_close(same[0], x[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(same[1], x[1].flip(-1), rtol=0, atol=1e-5)


def test_crop_covers_its_volume_fraction():
    """A crop of a linear ramp along W, resized, spans the ramp range its side covers: fraction^(1/3) of the axis with
    no aspect change."""
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 1, 64).expand(1, 1, 64, 64, 64).contiguous()
    u = torch.tensor([[0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])  # volume fraction 1/8 -> half of every side, centred
    out = resized_crop_3d(ramp, size=(8, 8, 8), scale=(0.125, 1.0), u=u, flip=torch.tensor([False]))
    span = out[0, 0, 0, 0, -1] - out[0, 0, 0, 0, 0]
    assert span.item() == pytest.approx(0.5 * 7 / 8, abs=0.02)  # 8 output voxels centred in half the axis


def test_blur_equals_scipy_gaussian_filter():
    from scipy.ndimage import gaussian_filter

    x = torch.randn(2, 2, 9, 10, 11, dtype=torch.float64)
    sigma = torch.tensor([0.7, 1.3], dtype=torch.float64)
    y = gaussian_blur_3d(x, sigma, radius=4)
    for b in range(2):
        for c in range(2):
            ref = gaussian_filter(x[b, c].numpy(), sigma=float(sigma[b]), mode="nearest", truncate=4 / float(sigma[b]))
            np.testing.assert_allclose(y[b, c].numpy(), ref, atol=1e-10)


def test_position_embedding_follows_a_smaller_grid():
    pos = torch.randn(1, 1, 4 * 4 * 4, 6)
    assert grid_position_embedding(pos, grid=(4, 4, 4), to=(4, 4, 4)) is pos
    constant = torch.ones(1, 1, 64, 6) * 3.0
    torch.testing.assert_close(grid_position_embedding(constant, grid=(4, 4, 4), to=(2, 2, 3)), torch.full((1, 1, 12, 6), 3.0))
    method = _method()
    tokens = method.backbone.token_encoder.tokenize(torch.randn(1, 2, 16, 16, 24))
    assert tokens.shape == (1, 2, 2 * 2 * 3, 24)


@pytest.mark.parametrize("backbone", ["vit", pytest.param("unetr", marks=pytest.mark.slow)])  # UNETR's 12 blocks: ~10 s
def test_pretraining_lowers_the_loss_on_both_series_token_encoders(backbone):
    """A few Adam steps on one batch lower DINO's loss (the objective trains the encoder through the student)."""
    method = _method(backbone)
    method.configure_schedule(recipe=Recipe(steps=6, batch_size=3, lr=1e-3), steps=6)
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(6):
        loss = method(_batch(0), generator=torch.Generator().manual_seed(0))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
