"""Disruptive autoencoder (benchmark/methods/dae.py): local masking, noise, down/up-sampling, method."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.methods import dae
from benchmark.blocks.losses import cross_modal_contrastive_loss
from benchmark.blocks.masking import local_channel_mask
from benchmark.blocks.noise import add_gaussian_noise, down_up_sample
from benchmark.methods.dae import DAEConfig, DisruptiveAutoencoder

# One sample, so the cross-modal contrastive term has no pair and the loss is the L1 part alone.
ONE_SAMPLE_MODALITY = torch.tensor([0])
ROI = (64, 32, 32)  # small crop that Swin-UNETR's five 2x stages divide, bottleneck 2x1x1 (instance norm needs >1 voxel)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- local masking ----------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [12, 48])
@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.4, 0.6, 0.75, 0.9])
def test_local_mask_zeroes_exactly_round_rc_channels_of_every_token(channels, ratio):
    """Every token (spatial position) has exactly round(r·C) of its C channels masked."""
    tokens = torch.randn(2, channels, 4, 3, 5, generator=_gen(1)) + 10.0  # no accidental zeros
    masked, mask = local_channel_mask(tokens, ratio=ratio, generator=_gen(2))
    assert mask.shape == tokens.shape and mask.dtype == torch.bool
    per_token = mask.sum(dim=1)  # [B, *spatial]
    assert (per_token == round(ratio * channels)).all()
    assert ((masked == 0).sum(dim=1) == round(ratio * channels)).all()


def test_local_mask_known_counts_for_paper_ratio():
    """r = 0.6: 7 of 12 and 29 of 48 channels are zeroed per token."""
    for channels, k in [(12, 7), (48, 29)]:
        _, mask = local_channel_mask(torch.ones(1, channels, 2, 2, 2), ratio=0.6, generator=_gen())
        assert (mask.sum(dim=1) == k).all()


@pytest.mark.parametrize("ratio", [0.4, 0.6, 0.9])
def test_local_mask_never_masks_a_whole_token(ratio):
    """For r < 1 every token keeps at least one channel (local, not token, masking)."""
    _, mask = local_channel_mask(torch.ones(3, 12, 6, 6, 6), ratio=ratio, generator=_gen(4))
    assert (~mask).any(dim=1).all()


def test_local_mask_differs_between_tokens():
    """Each token gets its own random channel subset."""
    _, mask = local_channel_mask(torch.ones(2, 12, 4, 4, 4), ratio=0.6, generator=_gen(5))
    patterns = mask.permute(0, 2, 3, 4, 1).reshape(-1, 12)  # one row per token
    assert len({tuple(p.tolist()) for p in patterns}) > patterns.shape[0] // 2
    # every channel is masked somewhere (no channel is always kept)
    assert patterns.any(dim=0).all() and (~patterns).any(dim=0).all()


def test_local_mask_values_zero_where_masked_and_input_elsewhere():
    """Masked entries are 0, unmasked entries equal the input."""
    tokens = torch.randn(2, 12, 3, 3, 3, generator=_gen(6))
    masked, mask = local_channel_mask(tokens, ratio=0.6, generator=_gen(7))
    assert (masked[mask] == 0).all()
    assert torch.equal(masked[~mask], tokens[~mask])


def test_local_mask_works_on_2d_tokens_and_is_seeded():
    """2D token maps work too; same seed -> same mask, other seed -> other mask."""
    tokens = torch.ones(2, 12, 8, 8)
    _, a = local_channel_mask(tokens, ratio=0.5, generator=_gen(8))
    _, b = local_channel_mask(tokens, ratio=0.5, generator=_gen(8))
    _, c = local_channel_mask(tokens, ratio=0.5, generator=_gen(9))
    assert (a.sum(dim=1) == 6).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---- Gaussian noise ---------------------------------------------------------------------------
@pytest.mark.parametrize("variance", [0.1, 0.05, 0.2, 1.0])
def test_noise_variance_is_sigma_not_sigma_squared(variance):
    """σ is the noise VARIANCE (appendix G.1): empirical variance ≈ σ, std ≈ sqrt(σ)."""
    x = torch.full((4, 1, 32, 32, 32), 3.0)
    noise = add_gaussian_noise(x, variance=variance, generator=_gen(10)) - x
    assert abs(noise.mean().item()) < 0.01
    assert noise.var().item() == pytest.approx(variance, rel=0.03)
    assert noise.std().item() == pytest.approx(variance**0.5, rel=0.02)


def test_noise_zero_variance_is_identity_and_seeded():
    """σ = 0 leaves x unchanged; the same seed gives the same noise."""
    x = torch.randn(2, 1, 8, 8, 8, generator=_gen(1))
    assert torch.equal(add_gaussian_noise(x, variance=0.0, generator=_gen(2)), x)
    a = add_gaussian_noise(x, variance=0.1, generator=_gen(3))
    b = add_gaussian_noise(x, variance=0.1, generator=_gen(3))
    c = add_gaussian_noise(x, variance=0.1, generator=_gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---- down / up sampling -----------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 16, 12), (2, 3, 16, 12, 8)])
@pytest.mark.parametrize("factor", [1.0, 2.0, 4.0])
def test_down_up_sample_keeps_shape_2d_and_3d(shape, factor):
    """Pre-upsampling super-resolution: the output has the input's shape in 2D and 3D."""
    x = torch.randn(shape, generator=_gen())
    assert down_up_sample(x, factor=factor).shape == x.shape


def test_down_up_sample_factor_one_is_identity():
    """ε = 1 returns the input unchanged."""
    x = torch.randn(1, 2, 8, 8, 8, generator=_gen())
    assert torch.equal(down_up_sample(x, factor=1), x)


@pytest.mark.parametrize("dims", [2, 3])
def test_down_up_sample_removes_checkerboard(dims):
    """Factor 2 turns a checkerboard (highest frequency) into a ~constant 0.5 image."""
    n = 16
    coords = torch.meshgrid(*[torch.arange(n)] * dims, indexing="ij")
    board = (sum(coords) % 2).float()[None, None]  # [1, 1, *spatial], values 0/1
    out = down_up_sample(board, factor=2)
    assert board.std() > 0.49
    assert out.std() < 0.02
    torch.testing.assert_close(out.mean(), torch.tensor(0.5), atol=0.01, rtol=0)


def test_down_up_sample_keeps_constant_and_smooth_images():
    """A constant image is unchanged and a slow ramp barely changes (low frequencies pass)."""
    const = torch.full((1, 1, 16, 16, 16), 2.5)
    torch.testing.assert_close(down_up_sample(const, factor=4), const)
    ramp = torch.linspace(0, 1, 32).view(1, 1, 32, 1).expand(1, 1, 32, 32).contiguous()
    assert (down_up_sample(ramp, factor=2) - ramp).abs()[..., 2:-2, :].max() < 0.02


def test_down_up_sample_larger_factor_blurs_more():
    """Higher ε loses more detail (larger reconstruction error of a random image)."""
    x = torch.randn(1, 1, 32, 32, 32, generator=_gen(3))
    errors = [(down_up_sample(x, factor=f) - x).pow(2).mean().item() for f in (2, 4, 8)]
    assert errors[0] < errors[1] < errors[2]


# ---- config ------------------------------------------------------------------------------------
def test_config_defaults_and_validation():
    """Paper defaults r = 0.6, σ = 0.1, ε = 4 (section 3.2); out-of-range values are rejected."""
    cfg = DAEConfig()
    assert (cfg.mask_ratio, cfg.noise_variance, cfg.downsample_factor) == (0.6, 0.1, 4.0)
    for bad in ({"mask_ratio": 1.0}, {"mask_ratio": -0.1}, {"noise_variance": -1}, {"downsample_factor": 0.5}):
        with pytest.raises(ValueError):
            DAEConfig(**bad)


# ---- the method on Swin-UNETR -------------------------------------------------------------------
@pytest.fixture(scope="module")
def swin():
    torch.manual_seed(0)
    return build_backbone("swin_unetr", in_channels=1, out_channels=1, size=SMOKE_SIZE, roi=ROI)


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 1, *ROI, generator=_gen(21))


def test_forward_masks_patch_embedding_tokens(swin, image):
    """The tokens after Swin-UNETR's patch embedding have round(r·C) zero channels per token."""
    method = DisruptiveAutoencoder(swin, DAEConfig(mask_ratio=0.6), in_channels=1)
    seen = []
    # pos_drop is the first module to consume the patch embedding's output in MONAI's SwinTransformer.
    handle = swin.net.swinViT.pos_drop.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            method({"image": image, "modality": ONE_SAMPLE_MODALITY}, generator=_gen(1))
    finally:
        handle.remove()
    assert len(seen) == 1
    tokens = seen[0]
    c = SMOKE_SIZE.swin_feature_size
    assert tokens.shape == (1, c, 32, 16, 16)
    assert ((tokens == 0).sum(dim=1) == round(0.6 * c)).all()


def test_forward_removes_its_hook(swin, image):
    """After forward (and after a failing forward) no hook is left on the patch embedding."""
    method = DisruptiveAutoencoder(swin, DAEConfig(), in_channels=1)
    before = len(swin.patch_embed._forward_hooks)
    with torch.no_grad():
        method({"image": image, "modality": ONE_SAMPLE_MODALITY}, generator=_gen(1))
    assert len(swin.patch_embed._forward_hooks) == before
    with pytest.raises(RuntimeError):
        method({"image": torch.randn(1, 3, *ROI), "modality": ONE_SAMPLE_MODALITY}, generator=_gen(1))  # wrong channel count: the backbone raises
    assert len(swin.patch_embed._forward_hooks) == before
    # a plain backbone call afterwards is not masked
    seen = []
    handle = swin.net.swinViT.pos_drop.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        swin(image)
    handle.remove()
    assert (seen[0] != 0).float().mean() > 0.99


def test_forward_with_zero_mask_ratio_equals_l1_of_disrupted_reconstruction(swin, image):
    """r = 0: loss == L1(backbone(down_up(x, ε) + sqrt(σ)·noise), x): the noise is added to the resampled image."""
    for sigma, eps in [(0.1, 4.0), (0.3, 2.0)]:
        cfg = DAEConfig(mask_ratio=0.0, noise_variance=sigma, downsample_factor=eps)
        method = DisruptiveAutoencoder(swin, cfg, in_channels=1)
        with torch.no_grad():
            loss = method({"image": image, "modality": ONE_SAMPLE_MODALITY}, generator=_gen(3))["loss"]
            noise = torch.randn(image.shape, generator=_gen(3))
            disrupted = down_up_sample(image, factor=eps) + sigma**0.5 * noise
            expected = F.l1_loss(swin(disrupted), image)
        torch.testing.assert_close(loss, expected)


def test_forward_loss_changes_with_mask_ratio_and_calls_local_mask(swin, image, monkeypatch):
    """The mask ratio reaches local_channel_mask, applied once to the patch-embedding output."""
    calls = []
    real = dae.local_channel_mask

    def spy(tokens, *, ratio, generator):
        calls.append((tuple(tokens.shape), ratio))
        return real(tokens, ratio=ratio, generator=generator)

    monkeypatch.setattr(dae, "local_channel_mask", spy)
    # The reconstruction, not the loss, is compared: at initialisation the head's output is
    # near zero, so the L1 loss is dominated by |x| and moves in its fifth digit only.
    reconstructions = []
    hook = swin.register_forward_hook(lambda module, inputs, output: reconstructions.append(output.detach()))
    try:
        for r in (0.0, 0.6):
            method = DisruptiveAutoencoder(swin, DAEConfig(mask_ratio=r), in_channels=1)
            with torch.no_grad():
                method({"image": image, "modality": ONE_SAMPLE_MODALITY}, generator=_gen(5))
    finally:
        hook.remove()
    c = SMOKE_SIZE.swin_feature_size
    assert calls == [((1, c, 32, 16, 16), 0.0), ((1, c, 32, 16, 16), 0.6)]
    unmasked, masked = reconstructions
    assert (masked - unmasked).abs().mean() > 0.05 * unmasked.abs().mean()


def test_forward_target_is_clean_image(swin, image):
    """With no disruption at all (σ = 0, ε = 1, r = 0) the loss is L1(backbone(x), x)."""
    method = DisruptiveAutoencoder(swin, DAEConfig(mask_ratio=0.0, noise_variance=0.0, downsample_factor=1.0), in_channels=1)
    with torch.no_grad():
        loss = method({"image": image, "modality": ONE_SAMPLE_MODALITY}, generator=_gen(0))["loss"]
        expected = F.l1_loss(swin(image), image)
    torch.testing.assert_close(loss, expected)


# ---- cross-modal contrastive loss (eq. 3-4) ------------------------------------------------------
def _clustered(modality: torch.Tensor, *, spread: float, seed: int = 0) -> torch.Tensor:
    """Features near one centre per modality (spread small: modalities well separated)."""
    centres = torch.eye(8)[:4] * 3.0
    return centres[modality] + spread * torch.randn(len(modality), 8, generator=_gen(seed))


def test_cmcl_known_value_two_modalities():
    """Hand-computed: 4 samples, modalities [0, 0, 1, 1], orthogonal unit features per modality.

    Row i: logits over j != i are 1/t for its positive and 0 for the two negatives, so
    CE = -log(e^(1/t) / (e^(1/t) + 2)); columns are identical (symmetric matrix).
    """
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    m = torch.tensor([0, 0, 1, 1])
    t = 0.5
    expected = -torch.log(torch.exp(torch.tensor(1 / t)) / (torch.exp(torch.tensor(1 / t)) + 2))
    torch.testing.assert_close(cross_modal_contrastive_loss(z, m, temperature=t), expected)


@pytest.mark.parametrize("reading", ["divide", "exp"])
def test_cmcl_temperature_readings_known_values(reading):
    """Both readings of eq. 3's t against hand-computed values, at the paper's t = 0.07.

    4 samples, modalities [0, 0, 1, 1], unit features: the pair of modality 0 at 60 degrees (cosine 1/2), modality 1
    orthogonal to both. Logits are s·cos with s = 1/t ("divide": 14.29) or exp(t) ("exp": 1.0725). Rows 0 and 1:
    -log(e^(s/2) / (e^(s/2) + 2)) (one positive at cosine 1/2, two negatives at 0); rows 2 and 3: their positive at
    cosine 1, negatives at cosine 0 and 0 -> -log(e^s / (e^s + 2)). The matrix is symmetric, so columns give the same.
    """
    import math

    t = 0.07
    s = 1 / t if reading == "divide" else math.exp(t)
    z = torch.tensor([[1.0, 0.0, 0.0], [0.5, math.sqrt(3) / 2, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    m = torch.tensor([0, 0, 1, 1])
    rows = [-math.log(math.exp(s / 2) / (math.exp(s / 2) + 2))] * 2 + [-math.log(math.exp(s) / (math.exp(s) + 2))] * 2
    expected = torch.tensor(sum(rows) / 4)
    torch.testing.assert_close(cross_modal_contrastive_loss(z, m, temperature=t, reading=reading), expected)
    # the printed reading barely separates the pairs: its loss stays near log 3 (a flat softmax over 3 candidates)
    if reading == "exp":
        assert abs(float(expected) - math.log(3)) < 0.6
    else:
        assert float(expected) < 0.01


def test_cmcl_temperature_reading_is_a_dae_config_switch():
    """DAEConfig.cmcl_temperature_reading: divide by default, exp on request, anything else rejected; the method passes it on."""
    from benchmark.blocks.losses import cmcl_logit_scale

    assert DAEConfig().cmcl_temperature_reading == "divide"
    assert cmcl_logit_scale(0.07) == pytest.approx(1 / 0.07) and cmcl_logit_scale(0.07, reading="exp") == pytest.approx(1.0725081812542165)
    with pytest.raises(ValueError, match="cmcl_temperature_reading"):
        DAEConfig(cmcl_temperature_reading="multiply")
    z = torch.randn(6, 8, generator=_gen(3))
    m = torch.tensor([0, 1, 2, 0, 1, 2])
    assert not torch.isclose(cross_modal_contrastive_loss(z, m, temperature=0.07),
                             cross_modal_contrastive_loss(z, m, temperature=0.07, reading="exp"))


def test_cmcl_symmetric_and_permutation_invariant():
    """Row and column losses agree and reordering the batch does not change the loss."""
    m = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])
    z = torch.randn(8, 16, generator=_gen(1))
    loss = cross_modal_contrastive_loss(z, m, temperature=0.07)
    perm = torch.randperm(8, generator=_gen(2))
    torch.testing.assert_close(cross_modal_contrastive_loss(z[perm], m[perm], temperature=0.07), loss)


def test_cmcl_lower_when_features_match_modalities():
    """Features clustered by modality give a lower loss than the same features with shuffled metadata."""
    m = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    z = _clustered(m, spread=0.1)
    matching = cross_modal_contrastive_loss(z, m, temperature=0.07)
    mismatched = cross_modal_contrastive_loss(z, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), temperature=0.07)
    assert matching < 0.1 < mismatched


def test_cmcl_zero_without_contrast():
    """One modality only (every pair positive) or no two samples of one modality: no contrast, loss 0 with a graph."""
    z = torch.randn(4, 8, generator=_gen(3), requires_grad=True)
    for m in (torch.tensor([2, 2, 2, 2]), torch.tensor([0, 1, 2, 3])):
        loss = cross_modal_contrastive_loss(z, m, temperature=0.07)
        assert loss.item() == 0.0 and loss.requires_grad


def _cmcl_worker(rank: int, z: torch.Tensor, m: torch.Tensor):
    """Half the batch on each of two workers, features gathered as the method does."""
    from benchmark.blocks.distributed import gather_no_grad, gather_with_grad

    half = len(z) // 2
    local = z[rank * half : (rank + 1) * half].clone().requires_grad_()
    loss = cross_modal_contrastive_loss(gather_with_grad(local), gather_no_grad(m[rank * half : (rank + 1) * half]), temperature=0.07)
    loss.backward()
    return loss.detach(), local.grad


def test_cmcl_two_workers_half_batch_equal_one_worker_full_batch():
    """Distributed check: the loss on 2 workers with B/2 equals 1 worker with B, and after DDP's
    gradient averaging (sum over workers / 2) each sample's gradient equals the 1-worker one."""
    from dist_utils import run_distributed

    m = torch.tensor([0, 1, 2, 0, 1, 3, 3, 2])
    z = torch.randn(8, 16, generator=_gen(4))
    full = z.clone().requires_grad_()
    loss = cross_modal_contrastive_loss(full, m, temperature=0.07)
    loss.backward()
    (loss0, grad0), (loss1, grad1) = run_distributed(_cmcl_worker, z, m)
    torch.testing.assert_close(loss0, loss.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(loss1, loss.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([grad0, grad1]) / 2, full.grad, atol=1e-6, rtol=0)


# ---- the full objective: CMCL weight, ablation switches, single-modality data ----------------------
def test_forward_adds_weighted_cmcl_on_bottleneck(swin):
    """loss = L1 + α·CMCL (eq. 5) with α from the config; α = 0 leaves the L1 term; cmcl=False has none."""
    # three samples, two of one modality: the smallest batch with a positive and a negative pair
    batch = {"image": torch.randn(3, 1, *ROI, generator=_gen(30)), "modality": torch.tensor([0, 0, 1])}
    torch.manual_seed(0)
    method = DisruptiveAutoencoder(swin, DAEConfig(cmcl_weight=0.05), in_channels=4)
    with torch.no_grad():
        out = method(batch, generator=_gen(1))
        torch.testing.assert_close(out["loss"], out["l1"] + 0.05 * out["cmcl"])
        assert out["cmcl"] > 0
        method.cfg = DAEConfig(cmcl_weight=0.0)
        torch.testing.assert_close(method(batch, generator=_gen(1))["loss"], out["l1"])
        method.cfg = DAEConfig(cmcl_temperature_reading="exp")  # eq. 3 as printed: the method passes the reading on
        literal = method(batch, generator=_gen(1))
        torch.testing.assert_close(literal["l1"], out["l1"])
        assert not torch.isclose(literal["cmcl"], out["cmcl"])
    plain = DisruptiveAutoencoder(swin, DAEConfig(cmcl=False), in_channels=4)
    assert plain.projection is None
    with torch.no_grad():
        out = plain(batch, generator=_gen(1))
    assert "cmcl" not in out and torch.equal(out["loss"], out["l1"])


@pytest.mark.parametrize("switch", ["noise", "downsampling"])
def test_ablation_switches_turn_off_one_disruption(switch):
    """noise=False: no noise added (only down/up-sampling); downsampling=False: noise only."""
    x = torch.randn(1, 1, 16, 16, 16, generator=_gen(5))
    cfg = DAEConfig(**{switch: False})
    method = DisruptiveAutoencoder(build_backbone("swin_unetr", in_channels=1, out_channels=1, size=SMOKE_SIZE, roi=ROI), cfg, in_channels=1)
    out = method.disrupt(x, generator=_gen(6))
    if switch == "noise":
        torch.testing.assert_close(out, down_up_sample(x, factor=4.0))
    else:
        torch.testing.assert_close(out, add_gaussian_noise(x, variance=0.1, generator=_gen(6)))


def test_local_masking_switch_off_leaves_tokens_whole(swin, image):
    """local_masking=False: the patch embedding output is not masked (the 'Noise' / 'Downsampling' ablations)."""
    method = DisruptiveAutoencoder(swin, DAEConfig(local_masking=False), in_channels=1)
    seen = []
    handle = swin.net.swinViT.pos_drop.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        method({"image": image, "modality": ONE_SAMPLE_MODALITY}, generator=_gen(1))
    handle.remove()
    assert (seen[0] != 0).float().mean() > 0.99


def test_config_requires_a_disruption():
    """Switching every disruption off is an error (nothing left to reconstruct from)."""
    with pytest.raises(ValueError, match="at least one"):
        DAEConfig(noise=False, downsampling=False, local_masking=False)


def test_pretraining_samples_are_single_modality_with_metadata():
    """modality_crops: each sample is one channel of a crop and batch['modality'] says which."""
    from benchmark.data import CropDataset
    from tasks.base import Volume

    image = np.stack([np.full((8, 8, 8), float(c + 1)) for c in range(4)]).astype(np.float32)  # channel c holds c + 1
    volume = Volume(case_id="a", image=image, label=np.zeros((8, 8, 8), dtype=np.int64))
    data = CropDataset([volume], roi=(4, 4, 4), length=40, seed=0, with_label=False, single_modality=True)
    assert DisruptiveAutoencoder.data_spec(DAEConfig()).kind == "modality_crops"
    assert DisruptiveAutoencoder.backbone_channels(DAEConfig(), in_channels=4) == (1, 1)
    seen = set()
    for i in range(40):
        item = data[i]
        assert item["image"].shape == (1, 4, 4, 4)
        assert torch.all(item["image"] == item["modality"] + 1)
        seen.add(int(item["modality"]))
    assert seen == {0, 1, 2, 3}


def test_single_channel_input_layer_is_inflated_for_multichannel_finetuning():
    """A DAE backbone pretrained on one channel keeps its input layers at fine-tuning: C copies of the
    kernel / C, so a C-channel input with equal channels embeds exactly like the one-channel input."""
    from benchmark.backbones.transfer import transfer_model
    from tasks import get_task

    torch.manual_seed(0)
    pretrained = build_backbone("swin_unetr", in_channels=1, out_channels=1, size=SMOKE_SIZE, roi=ROI)
    task = get_task("brats")
    model = transfer_model(DisruptiveAutoencoder, "swin_unetr", state=pretrained.state_dict(), pretrain_channels=(1, 1),
                           task=task, size=SMOKE_SIZE, roi=ROI)
    x = torch.randn(1, 1, *ROI, generator=_gen(7))
    with torch.no_grad():
        torch.testing.assert_close(model.patch_embed(x.repeat(1, 4, 1, 1, 1)), pretrained.patch_embed(x), atol=1e-5, rtol=1e-5)
    assert model.net.out.conv.conv.out_channels == task.num_outputs


def test_dae_input_noise_std_is_sqrt_sigma_after_downsampling():
    """DAE section 2: "we first add noise and downsample the image, then add the two perturbations", with σ the
    noise VARIANCE (appendix G.1): what reaches the network is D(x, ε) + N(0, σ), so the residual after
    removing D(x, ε) has std √σ = 0.316 at the paper's σ = 0.1, ε = 4 (linearly resampling the noisy image
    would leave ~0.063, i.e. most of the noise removed before the network sees it)."""
    x = torch.rand(2, 1, 48, 48, 48, generator=_gen(7))
    method = DisruptiveAutoencoder.__new__(DisruptiveAutoencoder)  # disrupt() reads only cfg
    torch.nn.Module.__init__(method)
    method.cfg = DAEConfig(noise_variance=0.1, downsample_factor=4.0, local_masking=False, cmcl=False)
    noise = method.disrupt(x, generator=_gen(8)) - down_up_sample(x, factor=4.0)
    assert noise.std().item() == pytest.approx(0.1**0.5, rel=0.02)
    assert abs(noise.mean().item()) < 0.01
    # noise-only and downsampling-only ablations are unchanged in meaning
    method.cfg = DAEConfig(noise_variance=0.1, downsampling=False, local_masking=False, cmcl=False)
    assert (method.disrupt(x, generator=_gen(8)) - x).std().item() == pytest.approx(0.1**0.5, rel=0.02)
    method.cfg = DAEConfig(noise=False, downsample_factor=4.0, local_masking=False, cmcl=False)
    torch.testing.assert_close(method.disrupt(x, generator=_gen(8)), down_up_sample(x, factor=4.0))


def test_cmcl_is_computed_in_fp32_under_bf16_autocast():
    """--precision bf16: the contrastive term stays fp32 (the DAE authors disable AMP: it goes NaN in half precision)
    and equals its fp32 value for the same features."""
    features = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    modality = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    plain = cross_modal_contrastive_loss(features, modality, temperature=0.07)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mixed = cross_modal_contrastive_loss(features, modality, temperature=0.07)
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, plain)
