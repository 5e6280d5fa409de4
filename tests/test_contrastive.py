"""SwAV and SimSiam on 2D slices (benchmark/methods/swav.py, simsiam.py, multicrop.py) and the resnet_unet backbone.

Pure parts alone (Sinkhorn, swapped prediction, negative cosine with stop-gradient, multi-crop
views), their distributed forms on two gloo workers, the backbone's surface and transfer, then
one forward/backward per method and backbone at the smoke size, checked like the registry contract.
"""
from __future__ import annotations

import socket

import pytest
import torch
import torch.nn.functional as F

from benchmark.backbones import PAPER_SIZE, SMOKE_SIZE, ResNetUNet, build_backbone, list_backbones
from benchmark.methods.base import Recipe, get_method
from benchmark.blocks.losses import simsiam_loss, sinkhorn, swav_loss
from benchmark.blocks.multicrop import crop_sizes, gaussian_blur, multi_crop
from benchmark.methods.simsiam import SimSiamConfig
from benchmark.methods.swav import SwAV, SwAVConfig
from benchmark.profiles import PAPER, SMOKE, TINY
from dist_utils import run_distributed  # tests/ is on sys.path (no package), also in the spawned workers

IN_CHANNELS = 2


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cosine_scores(views: int, batch: int, prototypes: int, dim: int = 6, seed: int = 0) -> torch.Tensor:
    """[V, B, K] cosines between random unit embeddings and random unit prototypes, as SwAV scores them."""
    z = F.normalize(torch.randn(views, batch, dim, generator=_gen(seed)), dim=2)
    c = F.normalize(torch.randn(prototypes, dim, generator=_gen(seed + 1)), dim=1)
    return z @ c.t()


# ---- Sinkhorn and the swapped prediction -----------------------------------------------------
def test_sinkhorn_codes_are_distributions_with_uniform_prototype_marginals():
    """Codes are >= 0 and sum to one per sample; over the batch every prototype gets ~B/K of the mass."""
    scores = _cosine_scores(1, 64, 8)[0]
    for iterations, tolerance in ((3, 0.5), (200, 1e-3)):
        q = sinkhorn(scores, epsilon=0.05, iterations=iterations)
        assert q.shape == (64, 8) and (q >= 0).all()
        torch.testing.assert_close(q.sum(dim=1), torch.ones(64), atol=1e-5, rtol=0)
        torch.testing.assert_close(q.sum(dim=0), torch.full((8,), 64 / 8), atol=0, rtol=tolerance)
    # equipartition overrides the raw argmax: with every sample closest to prototype 0, codes still spread
    skewed = torch.zeros(16, 4)
    skewed[:, 0] = 1.0
    skewed += 0.01 * torch.randn(16, 4, generator=_gen(3))
    assert sinkhorn(skewed, epsilon=0.05, iterations=3).sum(dim=0).max() < 16 / 4 * 1.5


def test_sinkhorn_has_no_gradient_and_survives_small_epsilon():
    scores = _cosine_scores(1, 8, 5)[0].requires_grad_()
    q = sinkhorn(scores, epsilon=0.005, iterations=3)  # exp(200) would overflow float32 without the shift
    assert not q.requires_grad and torch.isfinite(q).all()


def test_swav_loss_is_lower_when_views_agree_than_when_shuffled():
    """Views of the same samples predict each other's codes; views of other samples (shuffled) do not."""
    z = F.normalize(torch.randn(16, 8, generator=_gen(4)), dim=1)
    c = F.normalize(torch.randn(10, 8, generator=_gen(5)), dim=1)
    agree = torch.stack([z @ c.t()] * 4)  # [V=4, B, K]
    perm = torch.randperm(16, generator=_gen(6))
    shuffled = torch.stack([z @ c.t(), z[perm] @ c.t(), z[perm.flip(0)] @ c.t(), z[perm.roll(3)] @ c.t()])
    kwargs = dict(n_assign=2, temperature=0.1, epsilon=0.05, iterations=3)
    assert swav_loss(agree, **kwargs) < swav_loss(shuffled, **kwargs) - 0.5


# ---- SimSiam: negative cosine with stop-gradient --------------------------------------------------
def test_simsiam_loss_stops_the_gradient_at_the_targets():
    """No gradient flows into z (the targets); p gets one; -1 when each prediction matches the other view's target."""
    p1, p2, z1, z2 = (torch.randn(4, 6, generator=_gen(i)).requires_grad_() for i in range(4))
    loss = simsiam_loss(p1, p2, z1, z2)
    loss.backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0
    torch.testing.assert_close(simsiam_loss(z2, 3 * z1, z1, z2), torch.tensor(-1.0))


# ---- the losses on two workers with half the batch each -------------------------------------------
def _losses_on_worker(rank: int, scores: torch.Tensor, p1, p2, z1, z2):
    """This worker's rows (rank order) of every input; returns losses, gradients and codes."""
    from benchmark.blocks.distributed import local_slice, world_size

    rows = local_slice(scores.shape[1])
    mine = scores[:, rows].clone().requires_grad_()
    loss = swav_loss(mine, n_assign=2, temperature=0.1, epsilon=0.05, iterations=3)
    loss.backward()
    codes = sinkhorn(mine[0].detach(), epsilon=0.05, iterations=3)
    p = p1[rows].clone().requires_grad_()
    siam = simsiam_loss(p, p2[rows], z1[rows], z2[rows])
    siam.backward()
    return loss.detach(), mine.grad, codes, siam.detach(), p.grad, world_size()


def test_swav_and_simsiam_losses_two_workers_with_half_batch_equal_one_worker():
    """2 gloo workers with B/2 each: same codes, same loss as 1 worker with B, and gradients that DDP's
    average over the workers (divide by W) turns into the 1-worker ones."""
    scores = _cosine_scores(4, 8, 5, seed=7)  # 2 global + 2 local views
    p1, p2, z1, z2 = (torch.randn(8, 6, generator=_gen(10 + i)) for i in range(4))
    full = scores.clone().requires_grad_()
    expected = swav_loss(full, n_assign=2, temperature=0.1, epsilon=0.05, iterations=3)
    expected.backward()
    codes = sinkhorn(scores[0], epsilon=0.05, iterations=3)
    p_full = p1.clone().requires_grad_()
    expected_siam = simsiam_loss(p_full, p2, z1, z2)
    expected_siam.backward()
    for rank, (loss, grad, mine_codes, siam, p_grad, world) in enumerate(run_distributed(_losses_on_worker, scores, p1, p2, z1, z2)):
        assert world == 2
        rows = slice(4 * rank, 4 * rank + 4)
        torch.testing.assert_close(mine_codes, codes[rows], atol=1e-5, rtol=0)
        torch.testing.assert_close(loss, expected.detach(), atol=1e-5, rtol=0)
        torch.testing.assert_close(grad / world, full.grad[:, rows], atol=1e-6, rtol=0)
        torch.testing.assert_close(siam, expected_siam.detach(), atol=1e-5, rtol=0)
        torch.testing.assert_close(p_grad / world, p_full.grad[rows], atol=1e-6, rtol=0)


# ---- multi-crop views --------------------------------------------------------------------------
def _ramps(batch: int, side: int) -> torch.Tensor:
    """[B, 2, side, side]: channel 0 is each pixel's column index, channel 1 its row index."""
    cols = torch.arange(side, dtype=torch.float32).expand(side, side)
    return torch.stack([cols, cols.t()]).expand(batch, 2, side, side).contiguous()


def test_crop_sizes_are_the_papers_and_scale_down_to_small_inputs():
    """192 / 96 crops from paper-size slices; a 64-pixel smoke crop scales all sizes by 64/192."""
    assert crop_sizes(SwAVConfig(), 224)[:2] == (192, 96)
    assert crop_sizes(SwAVConfig(), 64)[:2] == (64, 32)
    assert crop_sizes(SimSiamConfig(), 224)[0] == 224 and crop_sizes(SimSiamConfig(), 64)[0] == 64
    views = multi_crop(torch.randn(3, 2, 64, 64), SwAVConfig(), generator=_gen())
    assert [tuple(v.shape) for v in views] == [(3, 2, 64, 64)] * 2 + [(3, 2, 32, 32)] * 6


def test_views_are_never_smaller_than_the_encoder_reads():
    """The smoke grid's 32x32 slices for a stride-32 encoder (VGG / ResNet): the scaled local crop (16) would vanish in
    the encoder; it is kept at the stride, and the paper's sizes are untouched wherever they exceed it."""
    assert crop_sizes(SwAVConfig(), 32)[:2] == (32, 16)
    assert crop_sizes(SwAVConfig(), 32, minimum=32)[:2] == (32, 32)
    assert crop_sizes(SwAVConfig(), 64, minimum=32)[:2] == (64, 32) and crop_sizes(SwAVConfig(), 224, minimum=32)[:2] == (192, 96)
    assert crop_sizes(SwAVConfig(), 16, minimum=32)[:2] == (16, 16)  # never above the input (check_view_sizes then says so)
    views = multi_crop(torch.randn(3, 2, 32, 32), SwAVConfig(), generator=_gen(), minimum=32)
    assert [tuple(v.shape) for v in views] == [(3, 2, 32, 32)] * 8


def test_multi_crop_respects_scales_aspect_ratio_and_flip():
    """Each view covers a fraction of the input area inside its scale range (measured on coordinate ramps)."""
    cfg = SwAVConfig(jitter_prob=0.0, blur_prob=0.0, flip_prob=0.0, channel_mode="all")
    side = 224
    views = multi_crop(_ramps(24, side), cfg, generator=_gen(1))
    for index, view in enumerate(views):
        size = view.shape[-1]
        span = (view.amax(dim=(2, 3)) - view.amin(dim=(2, 3))) * size / (size - 1)  # [B, 2] crop width, height
        area = span.prod(dim=1) / side**2
        lo, hi = cfg.global_crop_scale if index < 2 else cfg.local_crop_scale
        assert (area > lo * 0.99).all() and (area < hi * 1.01).all(), (index, area)
        assert (view[:, 0, :, 1:] >= view[:, 0, :, :-1]).all()  # no flip: columns increase
        if index >= 2:  # local crops are never clipped by the image border: aspect ratio in [3/4, 4/3]
            aspect = span[:, 0] / span[:, 1]
            assert (aspect > 0.74).all() and (aspect < 1.35).all()
    flipped = multi_crop(_ramps(4, 64), SwAVConfig(flip_prob=1.0, jitter_prob=0.0, blur_prob=0.0, channel_mode="all"), generator=_gen(1))
    assert all((v[:, 0, :, 1:] <= v[:, 0, :, :-1]).all() for v in flipped)


def test_same_generator_same_views_other_seed_other_views():
    x = torch.randn(3, 2, 64, 64, generator=_gen(2))
    torch.manual_seed(5)  # the global RNG must not matter
    a = multi_crop(x, SwAVConfig(), generator=_gen(7))
    torch.manual_seed(6)
    b = multi_crop(x, SwAVConfig(), generator=_gen(7))
    c = multi_crop(x, SwAVConfig(), generator=_gen(8))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.allclose(a[0], c[0])


def test_single_channel_mode_feeds_one_modality_repeated():
    """'single': every view of a sample is one of its channels repeated; samples draw different channels."""
    x = torch.stack([torch.zeros(64, 64), torch.ones(64, 64)]).expand(16, 2, 64, 64)  # channel c is the constant c
    views = multi_crop(x, SwAVConfig(jitter_prob=0.0, blur_prob=0.0), generator=_gen(3))
    picked = views[0][:, 0, 0, 0]
    assert set(picked.tolist()) == {0.0, 1.0}
    for v in views:
        torch.testing.assert_close(v, picked.view(-1, 1, 1, 1).expand_as(v))
    mixed = multi_crop(x, SwAVConfig(jitter_prob=0.0, blur_prob=0.0, channel_mode="all"), generator=_gen(3))
    torch.testing.assert_close(mixed[0][:, 1], torch.ones_like(mixed[0][:, 1]))


def test_gaussian_blur_keeps_constants_and_smooths_noise():
    x = torch.randn(2, 3, 16, 16, generator=_gen(4))
    blurred = gaussian_blur(x, torch.tensor([0.1, 2.0]), radius=6)
    torch.testing.assert_close(blurred[0], x[0], atol=1e-4, rtol=0)  # sigma 0.1: identity
    assert blurred[1].std() < 0.5 * x[1].std()
    torch.testing.assert_close(gaussian_blur(torch.full((1, 1, 8, 8), 3.0), torch.tensor([2.0]), radius=6), torch.full((1, 1, 8, 8), 3.0))


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="local_crop_scale"):
        SwAVConfig(local_crop_scale=(0.2, 0.1))
    with pytest.raises(ValueError, match="channel_mode"):
        SwAVConfig(channel_mode="mean")
    with pytest.raises(ValueError, match="exactly two views"):
        SimSiamConfig(n_local_crops=2)
    assert SwAVConfig(global_crop_scale=[0.2, 1.0]).global_crop_scale == (0.2, 1.0)  # JSON lists come back as tuples


# ---- resnet_unet -----------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    """Building the backbone must not touch the network (no pretrained weights are fetched)."""

    def refuse(*args, **kwargs):
        raise AssertionError("resnet_unet tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _resnet(in_channels=2, out_channels=2, size=SMOKE_SIZE, roi=(64, 64), seed=0) -> ResNetUNet:
    torch.manual_seed(seed)
    return build_backbone("resnet_unet", in_channels=in_channels, out_channels=out_channels, size=size, roi=roi)


def test_resnet_unet_registered_in_every_profile():
    assert "resnet_unet" in list_backbones() and ResNetUNet.spatial_dims == 2
    for profile in (SMOKE, TINY, PAPER):
        assert len(profile.rois["resnet_unet"]) == 2 and "resnet_unet" in profile.finetune_recipes
    # the smoke crop (the profile's to choose) holds the encoder's five stride-2 stages
    assert all(r % 32 == 0 for r in SMOKE.rois["resnet_unet"]) and "resnet_unet" in SMOKE.smoke_pretrain


@pytest.mark.parametrize("roi", [(64, 64), (32, 96)])
def test_resnet_unet_forward_shapes(no_network, roi):
    """Full-resolution output for square and non-square crops."""
    net = _resnet(in_channels=2, out_channels=3, roi=roi)
    x = torch.randn(2, 2, *roi)
    assert net(x).shape == (2, 3, *roi)
    maps = net.encode(x)
    assert [m.shape[1] for m in maps] == net.encoder.feature_info.channels() == [64, 16, 32, 64, 128]
    assert net.encoder.feature_info.reduction() == [2, 4, 8, 16, 32]


def test_resnet_unet_rejects_crops_that_five_stride_two_stages_do_not_divide(no_network):
    with pytest.raises(ValueError, match="multiples of 32"):
        _resnet(roi=(48, 64))


def test_resnet_unet_paper_encoder_is_timms_resnet50(no_network):
    import timm

    net = _resnet(in_channels=3, out_channels=1, size=PAPER_SIZE, roi=(224, 224))
    reference = timm.create_model("resnet50", pretrained=False, features_only=True, in_chans=3)
    assert {k: v.shape for k, v in net.encoder.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


def test_resnet_unet_encoder_prefixes_cover_the_encoder_and_only_it(no_network):
    net = _resnet()
    names = [n for n, _ in net.named_parameters()]
    encoder = [n for n in names if n.startswith(ResNetUNet.encoder_prefixes)]
    assert encoder == ["encoder." + n for n, _ in net.encoder.named_parameters()] and "encoder.conv1.weight" in encoder
    assert all(n.startswith(("decoder.", "head.")) for n in names if n not in encoder)


def test_resnet_unet_replace_input_and_output(no_network):
    net = _resnet(in_channels=2, out_channels=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.replace_input(4)
    net.replace_output(5)
    net.eval()
    assert net(torch.randn(1, 4, 64, 64)).shape == (1, 5, 64, 64)
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(after[k], before[k])}
    assert changed == {"encoder.conv1.weight", "head.weight", "head.bias"}


def test_encoder_transfers_to_fine_tuning(no_network):
    """transfer_model copies every encoder tensor (BN statistics included) of a pretrained backbone, nothing else."""
    from benchmark.backbones.transfer import transfer_model
    from tasks import get_task

    task = get_task("brats")
    channels = len(task.channels)
    method = SwAV(_resnet(in_channels=channels, out_channels=channels, seed=1), SwAV.make_config(), in_channels=channels)
    with torch.no_grad():
        method(({"image": torch.randn(2, channels, 64, 64)}), generator=_gen())  # moves the BN running statistics
    state = {k: v.detach().clone() for k, v in method.backbone.state_dict().items()}
    torch.manual_seed(2)
    model = transfer_model(SwAV, "resnet_unet", state=state, pretrain_channels=(channels, channels), task=task, size=SMOKE_SIZE, roi=(64, 64))
    own = model.state_dict()
    assert torch.equal(model.encoder.conv1.weight, state["encoder.conv1.weight"])
    for key, value in state.items():
        if key.startswith("encoder."):
            assert torch.equal(own[key], value), key
        elif value.dim() >= 2:  # decoder convolutions keep their fresh random initialisation
            assert not torch.equal(own[key], value), key
    assert model.head.out_channels == task.num_outputs


# ---- the two methods at the smoke size (contract-like) ---------------------------------------
CASES = [(m, b) for m in ("swav", "simsiam") for b in ("resnet_unet", "vgg_unet")]


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def trained(request):
    """(method, batch, output) after one forward + backward on a smoke-size batch, as the registry contract builds it."""
    name, backbone_name = request.param
    cls = get_method(name)
    cfg = cls.make_config()
    roi = SMOKE.rois[backbone_name]
    torch.manual_seed(0)
    cin, cout = cls.backbone_channels(cfg, in_channels=IN_CHANNELS)
    backbone = build_backbone(backbone_name, in_channels=cin, out_channels=cout, size=SMOKE_SIZE, roi=roi)
    method = cls(backbone, cfg, in_channels=IN_CHANNELS)
    assert cls.data_spec(cfg).kind == "crops" and cls.default_backbone == "resnet_unet"
    batch = {"image": torch.randn(2, IN_CHANNELS, *roi, generator=_gen(16))}
    torch.manual_seed(123)  # the global RNG must not matter
    out = method(batch, generator=_gen(0))
    out["loss"].backward()
    return method, batch, out


def test_loss_is_finite_and_gradients_reach_heads_and_encoder(trained):
    method, _, out = trained
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"]) and out["loss"].requires_grad
    backbone_ids = {id(p) for p in method.backbone.parameters()}
    missing = [n for n, p in method.named_parameters() if id(p) not in backbone_ids and (p.grad is None or not torch.any(p.grad != 0))]
    assert not missing, f"no gradient for head parameters {missing}"
    first = next(p for p in method.backbone.parameters() if p.dim() >= 4)
    assert first.grad is not None and torch.any(first.grad != 0)
    encoder = [(n, p) for n, p in method.backbone.named_parameters() if n.startswith(method.backbone.encoder_prefixes)]
    assert all(p.grad is not None for _, p in encoder)  # the whole encoder trains; the decoder is unused (trains_whole_backbone False)
    if isinstance(method.backbone, ResNetUNet):  # the registry contract's "more than half of the backbone" on the default backbone
        trainable = list(method.backbone.parameters())
        assert sum(p.grad is not None and bool(torch.any(p.grad != 0)) for p in trainable) > 0.5 * len(trainable)


def test_same_generator_seed_same_loss(trained):
    method, batch, out = trained
    with torch.no_grad():
        torch.manual_seed(999)
        again = method(batch, generator=_gen(0))["loss"]
        other = method(batch, generator=_gen(1))["loss"]
    torch.testing.assert_close(again, out["loss"].detach())
    assert other.item() != pytest.approx(again.item(), rel=1e-6)


def test_swav_freezes_prototypes_for_the_first_steps():
    """freeze_prototypes_steps = 1: no prototype gradient on the first training step, one on the second."""
    torch.manual_seed(0)
    backbone = build_backbone("vgg_unet", in_channels=1, out_channels=1, size=SMOKE_SIZE, roi=(64, 64))
    method = SwAV(backbone, SwAV.make_config({"freeze_prototypes_steps": 1, "n_local_crops": 2}), in_channels=1)
    batch = {"image": torch.randn(2, 1, 64, 64, generator=_gen(1))}
    method(batch, generator=_gen(0))["loss"].backward()
    assert method.prototypes.weight.grad is None and method.projector[0].weight.grad is not None
    method(batch, generator=_gen(0))["loss"].backward()
    assert method.prototypes.weight.grad is not None and int(method.step) == 2


def test_swav_freezes_prototypes_for_the_first_epoch():
    """CoPer appendix B / SwAV freeze_prototypes_niters: prototypes frozen for freeze_prototypes_epochs = 1 epoch,
    converted with the run's steps per epoch (331 iterations per epoch -> 331 frozen steps); a recipe counted
    in steps (smoke) has no epoch and freezes nothing; an explicit step count overrides."""
    backbone = build_backbone("vgg_unet", in_channels=1, out_channels=1, size=SMOKE_SIZE, roi=(64, 64))
    method = SwAV(backbone, SwAV.make_config({"n_local_crops": 2}), in_channels=1)
    assert SwAV.make_config().freeze_prototypes_epochs == 1.0 and method.freeze_steps == 0
    paper = SwAV.paper_recipe
    method.configure_schedule(recipe=paper, steps=400 * 331)
    assert method.freeze_steps == 331
    method.configure_schedule(recipe=paper, steps=400 * 187)  # CoPer Fig. 6: ~187 iterations per epoch
    assert method.freeze_steps == 187
    method.configure_schedule(recipe=Recipe(steps=80, batch_size=8, lr=1e-3), steps=80)
    assert method.freeze_steps == 0
    fixed = SwAV(backbone, SwAV.make_config({"freeze_prototypes_steps": 5}), in_channels=1)
    fixed.configure_schedule(recipe=paper, steps=400 * 331)
    assert fixed.freeze_steps == 5


def test_swav_paper_schedule_ends_at_final_lr_with_five_warmup_epochs_and_lars():
    """CoPer appendix B: base lr 0.6, final lr 0.0006, 5 warm-up epochs (of the run's epoch length), LARS (timm)."""
    from timm.optim import Lars

    from benchmark.train import lr_factor, make_optimizer

    recipe = SwAV.paper_recipe
    total = 400 * 187
    assert recipe.warmup_steps_for(total) == 5 * 187
    assert recipe.lr * lr_factor(0, total=total, recipe=recipe) == pytest.approx(0.6 / 935)
    assert recipe.lr * lr_factor(934, total=total, recipe=recipe) == pytest.approx(0.6)
    assert recipe.lr * lr_factor(total - 1, total=total, recipe=recipe) == pytest.approx(0.0006, rel=1e-3)
    assert recipe.lr * lr_factor(total, total=total, recipe=recipe) == pytest.approx(0.0006)
    midway = 935 + (total - 935) // 2
    assert recipe.lr * lr_factor(midway, total=total, recipe=recipe) == pytest.approx(0.0006 + 0.5 * (0.6 - 0.0006), rel=1e-4)
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(3))], recipe)
    assert isinstance(optimizer, Lars) and optimizer.defaults["lr"] == 0.6 and optimizer.defaults["weight_decay"] == 1e-6


def test_recipes_cite_their_sources():
    swav, simsiam = get_method("swav").paper_recipe, get_method("simsiam").paper_recipe
    assert (swav.epochs, swav.batch_size, swav.lr, swav.optimizer, swav.schedule) == (400, 96, 0.6, "lars", "cosine")
    assert (swav.final_lr, swav.warmup_epochs, swav.warmup_steps) == (0.0006, 5, 0)
    assert "appendix B" in swav.source and "does not give" in simsiam.source
    assert simsiam.lr == pytest.approx(0.05 * simsiam.batch_size / 256) and simsiam.weight_decay == 1e-4
