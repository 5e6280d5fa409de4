"""The Swin-UNETR self-supervised objective (Tang et al. 2022, "Self-Supervised Pre-Training of
Swin Transformers for 3D Medical Image Analysis", section 3.2), shared by three methods of the
DAE paper's Table 4 (section 3.3): ``swin_unetr_ssl`` (all three losses), ``rotation`` and
``contrastive`` (one loss each). They differ only in their Config's loss weights.

Pipeline (Tang et al. Fig. 1; MONAI research-contributions ``SwinUNETR/Pretrain/main.py``):
every crop x gives two views, each rotated by a random multiple of 90° (``random_rotations``)
and corrupted by random cut-out boxes (``cutout``, the reference's ``aug_rand``). The Swin
encoder encodes both views; light heads on its deepest features predict

* the rotation (4-way cross-entropy),
* a projection whose two views of a crop are positives for NT-Xent (``nt_xent``) over the
  GLOBAL batch (gathered across workers),
* the clean rotated view (inpainting, L1) through a small upsampling head.

Only the Swin encoder (``net.swinViT``) is trained and transferred, as in Tang et al., whose
heads sit on the encoder and whose fine-tuning loads the encoder weights alone; the Swin-UNETR
decoder is unused in pretraining (``transfer = "encoder"``, ``trains_whole_backbone = False``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import PretextTask
from benchmark.methods.dae import DisruptiveAutoencoder
from benchmark.methods.distributed import gather_with_grad

ROTATION_PLANE = (2, 3)  # [B, C, X, Y, Z]: the (X, Y) plane, i.e. rotation about the z-axis


@dataclass(frozen=True)
class SwinSSLConfig:
    # Total loss λ1·inpainting + λ2·contrastive + λ3·rotation with every λ = 1 (Tang et al. 3.2;
    # the reference ``Loss``: alpha1 = alpha2 = alpha3 = 1.0).
    rotation_weight: float = 1.0
    contrastive_weight: float = 1.0
    reconstruction_weight: float = 1.0
    temperature: float = 0.5  # NT-Xent τ; the reference ``Contrast(temperature=0.5)``
    projection_dim: int = 512  # contrastive head: Linear(encoder dim, 512) in the reference
    # Cut-out (reference ``patch_rand_drop``): up to 30% of the voxels in boxes whose sides are
    # between 5% and 25% of the crop's.
    max_drop: float = 0.3
    max_block: float = 0.25
    min_block: float = 0.05

    def __post_init__(self) -> None:
        weights = (self.rotation_weight, self.contrastive_weight, self.reconstruction_weight)
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError(f"loss weights (rotation, contrastive, reconstruction) must be >= 0 with one > 0, got {weights}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {self.projection_dim}")
        if not 0.0 <= self.max_drop < 1.0:
            raise ValueError(f"max_drop (fraction of voxels cut out) must be in [0, 1), got {self.max_drop}")
        if not 0.0 < self.min_block <= self.max_block <= 1.0:
            raise ValueError(f"need 0 < min_block <= max_block <= 1, got {self.min_block}, {self.max_block}")


# ---- corruptions -------------------------------------------------------------------------------
def rotate_volumes(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate sample i of x [B, C, X, Y, Z] by k[i]·90° in the (X, Y) plane (about the z-axis).

    Tang et al. 3.2 rotate by 0°, 90°, 180° or 270° about the z-axis (the reference ``rot_rand``
    rotates the dims (2, 3) of a [C, H, W, D] sample, i.e. about the first axis; we follow the
    paper, which also keeps non-cubic crops such as the smoke 64x64x32 in shape).
    """
    plane = (ROTATION_PLANE[0] - 1, ROTATION_PLANE[1] - 1)  # the same plane of one sample [C, X, Y, Z]
    return torch.stack([torch.rot90(sample, int(turns), dims=plane) for sample, turns in zip(x, k)])


def random_rotations(x: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(rotated x, labels [B] in {0, 1, 2, 3}): one uniform rotation class per sample."""
    if x.shape[ROTATION_PLANE[0]] != x.shape[ROTATION_PLANE[1]]:
        raise ValueError(f"rotation about the z-axis needs equal X and Y crop sides, got crop {tuple(x.shape[2:])}")
    labels = torch.randint(0, 4, (x.shape[0],), generator=generator)
    return rotate_volumes(x, labels), labels.to(x.device)


def _box(size: int, *, min_frac: float, max_frac: float, generator: torch.Generator) -> slice:
    """One side of a cut-out box: start in [0, size - min), length in [min, max) clipped at the edge."""
    low = max(1, int(min_frac * size))
    high = max(low + 1, int(max_frac * size))
    start = int(torch.randint(0, max(1, size - low), (1,), generator=generator))
    length = int(torch.randint(low, high, (1,), generator=generator))
    return slice(start, min(start + length, size))


def _drop_boxes(sample: torch.Tensor, source: torch.Tensor | None, cfg: SwinSSLConfig, generator: torch.Generator) -> torch.Tensor:
    """Reference ``patch_rand_drop``: boxes until their summed volume reaches U(0, max_drop)·N voxels.

    Each box is filled with ``source``'s voxels there, or (source None) with Gaussian noise
    min-max scaled to the sample's intensity range (the reference scales it to [0, 1], the
    range of its CT intensities).
    """
    spatial = sample.shape[1:]
    budget = float(torch.rand((), generator=generator)) * cfg.max_drop * sample[0].numel()
    low, high = sample.amin(), sample.amax()
    out, dropped = sample.clone(), 0
    while dropped < budget:
        box = (slice(None), *(_box(s, min_frac=cfg.min_block, max_frac=cfg.max_block, generator=generator) for s in spatial))
        if source is None:
            noise = torch.randn(out[box].shape, generator=generator).to(out)
            noise = (noise - noise.min()) / (noise.max() - noise.min()).clamp(min=1e-8)
            out[box] = low + noise * (high - low)
        else:
            out[box] = source[box]
        dropped += out[box][0].numel()
    return out


def cutout(x: torch.Tensor, *, cfg: SwinSSLConfig, generator: torch.Generator) -> torch.Tensor:
    """Inpainting corruption of x [B, C, *spatial] (reference ``aug_rand``): noise boxes, then
    boxes copied from another sample of the (local) batch drawn at random (none if it draws itself)."""
    out = []
    for i, sample in enumerate(x):
        sample = _drop_boxes(sample, None, cfg, generator)
        other = int(torch.randint(0, len(x), (1,), generator=generator))
        if other != i:
            sample = _drop_boxes(sample, x[other], cfg, generator)
        out.append(sample)
    return torch.stack(out)


# ---- contrastive loss ----------------------------------------------------------------------------
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """NT-Xent (Chen et al. 2020; Tang et al. 3.2) of two views z1, z2 [N, D], row i of each a positive pair.

    The 2N embeddings are L2-normalised; each one's positive is its other view and its negatives
    are the remaining 2N - 2; the loss is the mean over the 2N anchors of
    -log(exp(s_pos / τ) / Σ_{k≠anchor} exp(s_k / τ)) (the reference ``Contrast``).
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, D]
    self_pair = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_pair, float("-inf"))  # an anchor is not its own negative
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positive)


def global_nt_xent(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """NT-Xent over the batch of ALL workers: negatives come from every worker's samples.

    Every worker computes the same global loss; ``gather_with_grad`` sums the gradients that
    reach each worker's rows, and DDP's gradient averaging then gives the gradient of that loss,
    so W workers with batch B/W train like one worker with batch B.
    """
    return nt_xent(gather_with_grad(z1), gather_with_grad(z2), temperature=temperature)


# ---- heads -----------------------------------------------------------------------------------
def reconstruction_head(dim: int, out_channels: int) -> nn.Sequential:
    """The reference SSLHead's default ("vae") inpainting head: five (conv 3³, instance norm,
    leaky ReLU, 2x trilinear upsampling) stages from the stride-32 encoder features, widths
    dim/2, /4, /8, /16, /16, then a 1x1x1 conv to the image channels. The convs before a norm
    have no bias (the norm removes it, so it would get no gradient)."""
    widths = [dim, dim // 2, dim // 4, dim // 8, dim // 16, dim // 16]
    layers: list[nn.Module] = []
    for cin, cout in zip(widths[:-1], widths[1:]):
        layers += [
            nn.Conv3d(cin, cout, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm3d(cout),
            nn.LeakyReLU(),
            nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
        ]
    layers.append(nn.Conv3d(widths[-1], out_channels, kernel_size=1))
    return nn.Sequential(*layers)


class SwinSSLPretext(PretextTask):
    """Rotation + contrastive + inpainting on the Swin encoder, each loss on when its weight > 0 (Tang et al. 3.2)."""

    Config = SwinSSLConfig
    default_backbone = "swin_unetr"
    supported_backbones = ("swin_unetr",)
    transfer = "encoder"  # Tang et al.: the Swin encoder is pretrained; heads and decoder are not transferred
    trains_whole_backbone = False  # the Swin-UNETR decoder gets no gradient (DDP: find_unused_parameters)
    paper = "disruptive_autoencoders"
    # The DAE paper gives one pretraining recipe (3.2) and runs every compared method on Swin-UNETR
    # (3.3); its baselines are trained like DAE here, not with Tang et al.'s own schedule.
    paper_recipe = dataclasses.replace(
        DisruptiveAutoencoder.paper_recipe,
        source="DAE paper 3.2, its one pretraining recipe (Table 4 baselines train like DAE): AdamW lr 4e-4, wd 1e-5, 20K it, batch 2/GPU",
    )

    def __init__(self, backbone: nn.Module, cfg: SwinSSLConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        dim = backbone.bottleneck_channels  # 16 x feature_size, the deepest Swin stage
        # Heads only for the losses that are on, so every head parameter gets a gradient.
        self.rotation_head = nn.Linear(dim, 4) if cfg.rotation_weight > 0 else None
        self.contrastive_head = nn.Linear(dim, cfg.projection_dim) if cfg.contrastive_weight > 0 else None
        self.reconstruction_head = reconstruction_head(dim, in_channels) if cfg.reconstruction_weight > 0 else None

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, X, Y, Z]
        b = x.shape[0]
        # Two views per crop, each rotated then cut out (reference main.py: rot_rand x2, aug_rand x2).
        (view1, rot1), (view2, rot2) = random_rotations(x, generator=generator), random_rotations(x, generator=generator)
        corrupted = torch.cat([cutout(view1, cfg=self.cfg, generator=generator), cutout(view2, cfg=self.cfg, generator=generator)])
        features = self.backbone.bottleneck(corrupted)  # [2B, 16*fs, X/32, Y/32, Z/32], one encoder pass for both views
        pooled = features.flatten(2).mean(dim=2)  # [2B, 16*fs]; the reference reads single tokens (0 and 1) instead

        out, loss = {}, features.new_zeros(())
        if self.rotation_head is not None:
            out["rotation"] = F.cross_entropy(self.rotation_head(pooled), torch.cat([rot1, rot2]))
            loss = loss + self.cfg.rotation_weight * out["rotation"]
        if self.contrastive_head is not None:
            z = self.contrastive_head(pooled)  # [2B, projection_dim]
            out["contrastive"] = global_nt_xent(z[:b], z[b:], temperature=self.cfg.temperature)
            loss = loss + self.cfg.contrastive_weight * out["contrastive"]
        if self.reconstruction_head is not None:
            # Target: the clean rotated views, every voxel (reference L1Loss on rec vs x1, x2).
            out["reconstruction"] = F.l1_loss(self.reconstruction_head(features), torch.cat([view1, view2]))
            loss = loss + self.cfg.reconstruction_weight * out["reconstruction"]
        return {"loss": loss, **{k: v.detach() for k, v in out.items()}}
