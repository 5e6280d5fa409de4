"""DAE paper Table 4 baselines on Swin-UNETR: mae (token masking), swin_unetr_ssl, rotation, contrastive.

Pure parts alone (token mask, masked L1, rotations, cut-out, NT-Xent and its distributed form),
then one forward/backward per method at the smoke size, checked like the registry contract.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from benchmark.blocks.masking import mask_block_size
from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.methods import contrastive, mae, rotation, swin_unetr_ssl  # noqa: F401  (registration)
from benchmark.methods.base import get_method
from benchmark.blocks.losses import global_nt_xent, masked_l1, nt_xent
from benchmark.blocks.masking import token_mask, voxel_mask
from benchmark.methods.mae import MAEConfig
from benchmark.blocks.pretexts.swin_ssl import SwinSSLConfig
from benchmark.blocks.rotation import cutout, random_rotations, rotate_volumes
from benchmark.profiles import SMOKE
from dist_utils import run_distributed  # tests/ is on sys.path (no package), also in the spawned workers

ROI = SMOKE.rois["swin_unetr"]  # (32, 32, 32)
IN_CHANNELS = 2
NEW_METHODS = ["contrastive", "mae", "rotation", "swin_unetr_ssl"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- MAE: token mask and masked L1 -----------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.25, 0.6, 0.75])
@pytest.mark.parametrize("grid", [(4, 4, 2), (5, 3, 7)])
def test_token_mask_zeroes_exactly_round_rn_whole_tokens(ratio, grid):
    """Each sample has exactly round(r·N) masked tokens; masked tokens are zero in every channel, the others untouched."""
    n = math.prod(grid)
    mask = token_mask(3, grid, ratio=ratio, generator=_gen(1))
    assert mask.shape == (3, *grid) and mask.dtype == torch.bool
    assert (mask.flatten(1).sum(dim=1) == round(ratio * n)).all()
    tokens = torch.randn(3, 12, *grid, generator=_gen(2)) + 10.0  # no accidental zeros
    masked = tokens.masked_fill(mask[:, None], 0.0)  # what the MAE hook does
    assert ((masked == 0).all(dim=1) == mask).all()  # a token is zero in all channels iff masked
    assert torch.equal(masked.permute(0, 2, 3, 4, 1)[~mask], tokens.permute(0, 2, 3, 4, 1)[~mask])
    # independent per sample, reproducible from the generator
    assert not torch.equal(mask[0], mask[1])
    assert torch.equal(mask, token_mask(3, grid, ratio=ratio, generator=_gen(1)))


def test_voxel_mask_covers_each_token_patch():
    """A masked token masks its whole 2x2x2 voxel patch and nothing else."""
    tokens = token_mask(2, (3, 4, 2), ratio=0.5, generator=_gen(3))
    voxels = voxel_mask(tokens, (2, 2, 2))
    assert voxels.shape == (2, 1, 6, 8, 4)
    assert torch.equal(voxels[:, 0, ::2, ::2, ::2], tokens) and torch.equal(voxels[:, 0, 1::2, 1::2, 1::2], tokens)
    assert voxels.sum() == 8 * tokens.sum()


def test_masked_l1_only_counts_masked_voxels():
    """Changing the prediction where the mask is off leaves the loss unchanged; its value is the masked mean."""
    target = torch.randn(2, 2, 4, 4, 4, generator=_gen(4))
    prediction = torch.randn(2, 2, 4, 4, 4, generator=_gen(5))
    mask = voxel_mask(token_mask(2, (2, 2, 2), ratio=0.5, generator=_gen(6)), (2, 2, 2))  # [2, 1, 4, 4, 4]
    loss = masked_l1(prediction, target, mask)
    full = mask.expand_as(target)
    torch.testing.assert_close(loss, (prediction - target).abs()[full].mean())
    changed = torch.where(full, prediction, prediction + 100.0)
    torch.testing.assert_close(masked_l1(changed, target, mask), loss)
    assert masked_l1(torch.where(full, prediction + 1.0, prediction), target, mask) != loss


def test_mae_config_default_and_validation():
    """Mask ratio 0.6 (SimMIM's default, = DAE's r); ratios outside (0, 1) are rejected."""
    assert MAEConfig().mask_ratio == 0.6
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError):
            MAEConfig(mask_ratio=bad)


# ---- rotations and cut-out ---------------------------------------------------------------------
def test_rotation_labels_match_the_applied_rotation():
    """Label k means rot90 by k in the (X, Y) plane; rotating back by (4 − k) recovers the input."""
    x = torch.randn(32, 2, 6, 6, 3, generator=_gen(7))
    rotated, labels = random_rotations(x, generator=_gen(8))
    assert labels.dtype == torch.long and set(labels.tolist()) == {0, 1, 2, 3}
    for i, k in enumerate(labels.tolist()):
        torch.testing.assert_close(rotated[i], torch.rot90(x[i], k, dims=(1, 2)), rtol=0, atol=0)
    torch.testing.assert_close(rotate_volumes(rotated, (4 - labels) % 4), x, rtol=0, atol=0)
    again, labels_again = random_rotations(x, generator=_gen(8))
    assert torch.equal(labels, labels_again) and torch.equal(rotated, again)
    with pytest.raises(ValueError, match="equal X and Y"):
        random_rotations(torch.zeros(1, 1, 4, 6, 2), generator=_gen())


def test_cutout_fills_boxes_within_the_intensity_range():
    """Cut-out changes at most max_drop of the voxels per pass, fills inside the sample's range, is reproducible."""
    cfg = SwinSSLConfig()
    x = torch.rand(1, 1, 32, 32, 16, generator=_gen(9)) * 4.0 - 1.0  # one sample: no box copied from another
    out = cutout(x, cfg=cfg, generator=_gen(10))
    changed = out != x
    assert 0 < changed.float().mean() <= cfg.max_drop + cfg.max_block**3  # the last box may overshoot the budget
    assert out.min() >= x.min() and out.max() <= x.max()
    assert torch.equal(out, cutout(x, cfg=cfg, generator=_gen(10)))
    assert torch.equal(cutout(x, cfg=SwinSSLConfig(max_drop=0.0), generator=_gen(10)), x)


def test_swin_ssl_configs_defaults_and_validation():
    """Tang et al.: weights 1/1/1, τ = 0.5, projection 512; rotation and contrastive keep one loss each."""
    assert get_method("swin_unetr_ssl").make_config() == SwinSSLConfig(1.0, 1.0, 1.0, 0.5, 512)
    rot, con = get_method("rotation").make_config(), get_method("contrastive").make_config()
    assert (rot.rotation_weight, rot.contrastive_weight, rot.reconstruction_weight) == (1.0, 0.0, 0.0)
    assert (con.rotation_weight, con.contrastive_weight, con.reconstruction_weight) == (0.0, 1.0, 0.0)
    for bad in ({"rotation_weight": 0.0, "contrastive_weight": 0.0, "reconstruction_weight": 0.0},
                {"rotation_weight": -1.0}, {"temperature": 0.0}, {"max_drop": 1.0}, {"min_block": 0.5, "max_block": 0.25}):
        with pytest.raises(ValueError):
            SwinSSLConfig(**bad)


# ---- NT-Xent ---------------------------------------------------------------------------------
def test_nt_xent_known_values():
    """Hand-computed: orthogonal pairs give log(1 + 2e^(−1/τ)); a skewed example matches the formula row by row."""
    eye = torch.eye(2)
    for t in (1.0, 0.5):
        torch.testing.assert_close(nt_xent(eye, eye, temperature=t), torch.tensor(math.log(1 + 2 * math.exp(-1 / t))))
    # anchors a0 = e1, a1 = e2, b0 = (1, 1)/√2, b1 = e2 (τ = 1); s = cos 45° = 1/√2
    s, e = 1 / math.sqrt(2), math.e
    rows = [
        -math.log(math.exp(s) / (1 + math.exp(s) + 1)),  # a0: positive b0 (s), negatives a1 (0), b1 (0)
        -math.log(e / (1 + math.exp(s) + e)),  # a1: positive b1 (1), negatives a0 (0), b0 (s)
        math.log(3.0),  # b0: positive a0 (s), negatives a1 (s), b1 (s)
        -math.log(e / (1 + e + math.exp(s))),  # b1: positive a1 (1), negatives a0 (0), b0 (s)
    ]
    got = nt_xent(eye, torch.tensor([[1.0, 1.0], [0.0, 1.0]]), temperature=1.0)
    torch.testing.assert_close(got, torch.tensor(sum(rows) / 4))


def test_nt_xent_symmetric_scale_free_and_lower_for_matching_views():
    """Swapping the views or scaling features does not change it; matching views beat shuffled ones."""
    z1 = torch.randn(8, 16, generator=_gen(11))
    z2 = z1 + 0.1 * torch.randn(8, 16, generator=_gen(12))
    loss = nt_xent(z1, z2, temperature=0.5)
    torch.testing.assert_close(nt_xent(z2, z1, temperature=0.5), loss)
    torch.testing.assert_close(nt_xent(3 * z1, z2, temperature=0.5), loss)
    shuffled = nt_xent(z1, z2[torch.randperm(8, generator=_gen(13))], temperature=0.5)
    assert loss < shuffled - 1.0


def _nt_xent_on_worker(rank: int, z1: torch.Tensor, z2: torch.Tensor, temperature: float):
    """One worker's share (rank order, B/2 rows) through global_nt_xent; returns loss and its rows' gradients."""
    from benchmark.blocks.distributed import local_slice, world_size

    rows = local_slice(len(z1))
    mine1, mine2 = z1[rows].clone().requires_grad_(), z2[rows].clone().requires_grad_()
    loss = global_nt_xent(mine1, mine2, temperature=temperature)
    loss.backward()
    return loss.detach(), mine1.grad, mine2.grad, world_size()


def test_nt_xent_two_workers_with_half_batch_equal_one_worker():
    """2 gloo workers with B/2 each give the 1-worker loss over B; their gradients, averaged by DDP, match too."""
    z1, z2 = torch.randn(6, 8, generator=_gen(14)), torch.randn(6, 8, generator=_gen(15))
    full1, full2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    expected = global_nt_xent(full1, full2, temperature=0.5)  # not distributed here: plain nt_xent
    expected.backward()
    results = run_distributed(_nt_xent_on_worker, z1, z2, 0.5)
    for rank, (loss, grad1, grad2, world) in enumerate(results):
        assert world == 2
        torch.testing.assert_close(loss, expected.detach(), atol=1e-5, rtol=0)
        rows = slice(3 * rank, 3 * rank + 3)
        # Every worker back-propagates the same global loss and the gather sums them: W x the true gradient,
        # which DDP's averaging over W workers divides back out.
        torch.testing.assert_close(grad1 / world, full1.grad[rows], atol=1e-5, rtol=0)
        torch.testing.assert_close(grad2 / world, full2.grad[rows], atol=1e-5, rtol=0)


# ---- the four methods at the smoke size (contract-like) --------------------------------------
@pytest.fixture(scope="module", params=NEW_METHODS)
def trained(request):
    """(name, method, batch, output) after one forward + backward on a smoke-size batch."""
    cls = get_method(request.param)
    cfg = cls.make_config()
    torch.manual_seed(0)
    backbone = build_backbone(cls.default_backbone, in_channels=IN_CHANNELS, out_channels=IN_CHANNELS, size=SMOKE_SIZE, roi=ROI)
    method = cls(backbone, cfg, in_channels=IN_CHANNELS)
    batch = {"image": torch.randn(2, IN_CHANNELS, *ROI, generator=_gen(16))}
    torch.manual_seed(123)  # the global RNG must not matter
    out = method(batch, generator=_gen(0))
    out["loss"].backward()
    return request.param, method, batch, out


def test_method_loss_finite_and_sum_of_weighted_parts(trained):
    """A finite scalar with a graph; for the Swin SSL methods, the weighted sum of the logged parts."""
    name, method, _, out = trained
    loss = out["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
    if name != "mae":
        cfg = method.cfg
        weights = {"rotation": cfg.rotation_weight, "contrastive": cfg.contrastive_weight, "reconstruction": cfg.reconstruction_weight}
        assert set(out) - {"loss"} == {k for k, w in weights.items() if w > 0}
        torch.testing.assert_close(loss.detach(), sum(weights[k] * out[k] for k in weights if k in out))


def test_method_gradients_reach_heads_and_backbone(trained):
    """Every head parameter and the first conv get gradients; > 50% of backbone tensors do (registry contract).

    MAE trains the whole Swin-UNETR (DDP without find_unused_parameters needs every parameter used);
    the Swin SSL methods train the encoder only and leave the decoder without gradient.
    """
    name, method, _, _ = trained
    backbone_ids = {id(p) for p in method.backbone.parameters()}
    heads = [(n, p) for n, p in method.named_parameters() if id(p) not in backbone_ids]
    assert bool(heads)  # MAE's only own parameter is SimMIM's learned mask token
    assert not [n for n, p in heads if p.grad is None or not torch.any(p.grad != 0)]
    trainable = [(n, p) for n, p in method.backbone.named_parameters() if p.requires_grad]
    assert torch.any(trainable[0][1].grad != 0)  # net.swinViT.patch_embed.proj.weight
    has_grad = {n for n, p in trainable if p.grad is not None and bool(torch.any(p.grad != 0))}
    assert len(has_grad) > 0.5 * len(trainable)
    if name == "mae":
        assert method.trains_whole_backbone and method.transfer == "all"
        assert all(p.grad is not None for _, p in trainable)
    else:
        assert not method.trains_whole_backbone and method.transfer == "encoder"
        encoder = {n for n, _ in trainable if n.startswith(method.backbone.encoder_prefixes)}
        assert has_grad == encoder  # exactly the transferred part learns


def test_mae_forward_masks_tokens_and_hides_their_voxels():
    """In the forward: round(r·M) whole SimMIM blocks (8x8x4 voxels at the smoke crop) replaced by the learned
    mask token, the other tokens equal the clean embedding, the masked voxels zeroed in the input (skip
    path), and the loss is the L1 on exactly those voxels."""
    torch.manual_seed(0)
    backbone = build_backbone("swin_unetr", in_channels=IN_CHANNELS, out_channels=IN_CHANNELS, size=SMOKE_SIZE, roi=ROI)
    method = get_method("mae")(backbone, MAEConfig(), in_channels=IN_CHANNELS)
    x = torch.randn(2, IN_CHANNELS, *ROI, generator=_gen(17))
    seen = {}
    hooks = [
        backbone.net.swinViT.pos_drop.register_forward_pre_hook(lambda _m, args: seen.update(tokens=args[0])),
        backbone.register_forward_hook(lambda _m, args, output: seen.update(input=args[0], output=output)),
    ]
    try:
        with torch.no_grad():
            loss = method({"image": x}, generator=_gen(18))["loss"]
            clean_tokens = backbone.patch_embed(x)
    finally:
        for h in hooks:
            h.remove()
    assert not backbone.patch_embed._forward_hooks  # the masking hook is removed after forward
    grid = tuple(r // 2 for r in ROI)
    token = method.mask_token.view(1, -1, 1, 1, 1)
    masked = (seen["tokens"] == token).all(dim=1)  # [B, *grid]
    assert masked.shape == (2, *grid)
    per_block = tuple(v // 2 for v in mask_block_size(ROI, (2, 2, 2), block=16, reference_crop=96))  # tokens per SimMIM block
    blocks = tuple(g // b for g, b in zip(grid, per_block))
    assert (masked.flatten(1).sum(dim=1) == round(0.6 * math.prod(blocks)) * math.prod(per_block)).all()
    keep = ~masked[:, None].expand_as(clean_tokens)
    torch.testing.assert_close(seen["tokens"][keep], clean_tokens[keep])
    voxels = voxel_mask(masked, (2, 2, 2))
    assert torch.equal(seen["input"], x.masked_fill(voxels, 0.0))
    torch.testing.assert_close(loss, masked_l1(seen["output"], x, voxels))

