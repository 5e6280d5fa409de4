"""MAE baseline of the DAE paper (section 3.3, Tables 3-5): SimMIM-style masked image modelling on Swin-UNETR.

"MAE and SimMIM are very similar ... the only difference being MAEs discard masked tokens while
SimMIM includes them. So, we just utilize a masked image modelling configuration but with
Swin-UNETR as the backbone and call this configuration MAE" (section 3.3). Section 2 describes
that token masking: "some tokens X out of N are set to zero ... the entire C dimension of the
chosen X tokens". So: exactly round(r·N) of the N patch-embedding tokens of every sample are
zeroed (a forward hook on ``backbone.patch_embed``, as DAE's local masking), the whole
Swin-UNETR reconstructs the image, and the loss is SimMIM's L1 on the masked voxels only.

Swin-UNETR's first skip block (``encoder1``) reads the raw input, so masking the tokens alone
would let the decoder copy the hidden voxels from the skip path; the voxels under masked tokens
are zeroed in the input as well, so the network never sees them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from benchmark.methods.base import PretextTask, register_method
from benchmark.methods.dae import DisruptiveAutoencoder
from benchmark.methods.mae3d import random_token_masks  # MAE random masking, shared with the CSM paper's MAE3D


@dataclass(frozen=True)
class MAEConfig:
    # The DAE paper does not state its MAE ratio. 0.6 is SimMIM's default (Xie et al. 2022), the
    # configuration the paper says it uses, and DAE's own ratio (r = 60%, section 3.2); MAE's
    # default would be 0.75. SimMIM masks 32-pixel squares; the paper describes whole tokens.
    mask_ratio: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"MAEConfig.mask_ratio must be in (0, 1), got {self.mask_ratio}")


def token_mask(batch: int, grid: tuple[int, ...], *, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Exactly round(ratio·N) of the N = prod(grid) tokens of each sample, drawn independently: bool [B, *grid], True = masked."""
    return random_token_masks(batch, math.prod(grid), ratio=ratio, generator=generator).reshape(batch, *grid)


def voxel_mask(tokens: torch.Tensor, patch: tuple[int, ...]) -> torch.Tensor:
    """Token mask [B, *grid] -> voxel mask [B, 1, *(grid·patch)]: each token covers a patch of voxels."""
    out = tokens
    for dim, p in enumerate(patch, start=1):
        out = out.repeat_interleave(p, dim=dim)
    return out[:, None]


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SimMIM's loss: mean |prediction − target| over the masked voxels (mask [B, 1, *spatial], every channel)."""
    mask = mask.expand_as(target).to(prediction.dtype)
    return ((prediction - target).abs() * mask).sum() / mask.sum().clamp(min=1.0)


@register_method("mae")
class MaskedImageModelling(PretextTask):
    """MAE (SimMIM-style): whole patch-embedding tokens zeroed at ratio r, L1 on the masked voxels (DAE paper 2, 3.3)."""

    Config = MAEConfig
    default_backbone = "swin_unetr"
    supported_backbones = ("swin_unetr",)
    transfer = "all"  # the whole Swin-UNETR reconstructs, as in DAE; the output layer is replaced at fine-tuning
    paper = "disruptive_autoencoders"
    paper_recipe = dataclasses.replace(
        DisruptiveAutoencoder.paper_recipe,
        source="DAE paper 3.2, its one pretraining recipe (Table 4 baselines train like DAE): AdamW lr 4e-4, wd 1e-5, 20K it, batch 2/GPU",
    )

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, D, H, W]
        patch = tuple(self.backbone.patch_embed.patch_size)  # (2, 2, 2) for Swin-UNETR
        if any(s % p for s, p in zip(x.shape[2:], patch)):
            raise ValueError(f"mae: crop {tuple(x.shape[2:])} is not a multiple of the patch size {patch}")
        grid = tuple(s // p for s, p in zip(x.shape[2:], patch))
        tokens_masked = token_mask(x.shape[0], grid, ratio=self.cfg.mask_ratio, generator=generator).to(x.device)  # [B, *grid]
        voxels_masked = voxel_mask(tokens_masked, patch)  # [B, 1, D, H, W]

        def zero_tokens(_module, _inputs, tokens):  # tokens [B, C, *grid]
            return tokens.masked_fill(tokens_masked[:, None], 0.0)

        handle = self.backbone.patch_embed.register_forward_hook(zero_tokens)
        try:
            reconstruction = self.backbone(x.masked_fill(voxels_masked, 0.0))  # hidden from the skip path too
        finally:
            handle.remove()
        return {"loss": masked_l1(reconstruction, x, voxels_masked)}
