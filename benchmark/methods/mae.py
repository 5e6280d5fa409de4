"""MAE baseline of the DAE paper (section 3.3, Tables 3-5): SimMIM masked image modelling on Swin-UNETR.

"MAE and SimMIM are very similar ... the only difference being MAEs discard masked tokens while
SimMIM includes them. So, we just utilize a masked image modelling configuration but with
Swin-UNETR as the backbone and call this configuration MAE" (section 3.3). That configuration is
SimMIM's (Xie et al. 2022): random masking of BLOCKS much larger than the model's patch, the masked
tokens replaced by a LEARNED mask token, and an L1 loss on the masked voxels only.

Block size: SimMIM masks 32-pixel squares over 4-pixel patches; the DAE authors' SimMIM code
(``Pretrain_full_contrast``, ``MaskGenerator(input_size=96, mask_patch_size=16, model_patch_size=2)``)
masks 16³-voxel blocks of the 96³ crop, i.e. 8³ Swin tokens per block. Masking single 2³-voxel
tokens instead leaves every masked voxel about one voxel from a visible one (an interpolation task),
far easier than the baseline the paper reported. ``mask_block_size`` (voxels at a
``mask_block_reference_crop`` side, 16 at 96) is scaled with the crop (``mask_block_size``):
the smoke crop 64x64x32 gets 8x8x4-voxel blocks on Swin-UNETR and 8x8x8 on the smoke ViT (patch 8).
The paper's section 2 describes MAE as zeroing "some tokens X out of N"; the authors' code, which the
paper says it uses ("a masked image modelling configuration"), uses blocks and a learned token: we
follow the code here because the paper names SimMIM's configuration and gives no block size itself.

Swin-UNETR's first skip block (``encoder1``) reads the raw input, so masking the tokens alone
would let the decoder copy the hidden voxels from the skip path; the voxels under masked tokens
are zeroed in the input as well, so the network never sees them (the ViT's skip block likewise).
(The authors' ``SimMIMSkip`` multiplies the input by the mask, zeroing the VISIBLE voxels; we zero
the masked ones, which is what hiding them requires.)

Backbones: every backbone with a patch embedding (``Backbone.patch_embed``): Swin-UNETR and the
series-token ViT. The ViT embeds each series separately; a token position is masked in every
series of the sample, as the voxels under it are.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.blocks.groups import BACKBONES_2D, BACKBONES_3D, unsupported
from benchmark.blocks.losses import masked_l1
from benchmark.blocks.masking import block_token_mask, mask_block_size, voxel_mask
from benchmark.blocks.recipes import DAE_BASELINE_SOURCE, DAE_PAPER_RECIPE
from benchmark.methods.base import PretextTask, register_method


@dataclass(frozen=True)
class MAEConfig:
    # The DAE paper does not state its MAE ratio. 0.6 is SimMIM's default (Xie et al. 2022), the
    # DAE authors' code default (--mask_ratio 0.6) and DAE's own ratio (r = 60%, section 3.2).
    mask_ratio: float = 0.6
    # SimMIM mask blocks: 16 voxels per side at a 96-voxel crop (DAE authors' --mask_patch_size 16,
    # --img_size 96), scaled with the crop and snapped to the token grid (blocks.masking.mask_block_size).
    mask_block_size: int = 16
    mask_block_reference_crop: int = 96

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"MAEConfig.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.mask_block_size < 1 or self.mask_block_reference_crop < 1:
            raise ValueError(f"MAEConfig: mask_block_size and mask_block_reference_crop must be >= 1, got "
                             f"{self.mask_block_size}, {self.mask_block_reference_crop}")


def _embed_dim(patch_embed: nn.Module) -> int:
    """Channels of the patch-embedding tokens (Swin-UNETR's PatchEmbed.proj, or the ViT's Conv3d itself)."""
    proj = getattr(patch_embed, "proj", patch_embed)
    return int(proj.out_channels)


@register_method("mae")
class MaskedImageModelling(PretextTask):
    """MAE (SimMIM): blocks of tokens replaced by a learned mask token at ratio r, L1 on the masked voxels (DAE paper 3.3)."""

    Config = MAEConfig
    default_backbone = "swin_unetr"
    supported_backbones = BACKBONES_3D
    unsupported_backbones = unsupported(
        BACKBONES_2D, "masked image modelling replaces patch-embedding tokens by a mask token (DAE paper 2, 3.3); "
                      "a convolutional 2D network has no patch embedding")
    transfer = "all"  # the whole Swin-UNETR reconstructs, as in DAE; the output layer is replaced at fine-tuning
    paper = "disruptive_autoencoders"
    paper_recipe = dataclasses.replace(DAE_PAPER_RECIPE, source=DAE_BASELINE_SOURCE)

    def __init__(self, backbone, cfg, *, in_channels):
        super().__init__(backbone, cfg, in_channels=in_channels)
        if backbone.patch_embed is None:
            raise ValueError(f"mae: needs a backbone with a patch embedding; {type(backbone).__name__} has none")
        # SimMIM's learned mask token (trunc-normal, std 0.02, as SimMIM and the DAE authors' code).
        self.mask_token = nn.Parameter(torch.zeros(_embed_dim(backbone.patch_embed)))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def block_size(self, crop: tuple[int, ...]) -> tuple[int, ...]:
        """Mask-block side per axis in voxels for this crop (a multiple of the patch that divides the crop)."""
        return mask_block_size(crop, self.backbone.patch_size, block=self.cfg.mask_block_size,
                               reference_crop=self.cfg.mask_block_reference_crop)

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, C, D, H, W]
        patch = self.backbone.patch_size  # (2, 2, 2) for Swin-UNETR, (p, p, p) for the ViT
        if any(s % p for s, p in zip(x.shape[2:], patch)):
            raise ValueError(f"mae: crop {tuple(x.shape[2:])} is not a multiple of the patch size {patch}")
        grid = tuple(s // p for s, p in zip(x.shape[2:], patch))
        block_tokens = tuple(b // p for b, p in zip(self.block_size(tuple(x.shape[2:])), patch))
        tokens_masked = block_token_mask(x.shape[0], grid, block_tokens, ratio=self.cfg.mask_ratio,
                                         generator=generator).to(x.device)  # [B, *grid]
        voxels_masked = voxel_mask(tokens_masked, patch)  # [B, 1, D, H, W]

        def replace_tokens(_module, _inputs, tokens):  # tokens [B', C, *grid]; B' = B·series for the per-series ViT
            per_sample = tokens_masked.repeat_interleave(tokens.shape[0] // tokens_masked.shape[0], dim=0)[:, None]
            token = self.mask_token.to(tokens.dtype).view(1, -1, *([1] * (tokens.dim() - 2)))
            return torch.where(per_sample, token, tokens)

        handle = self.backbone.patch_embed.register_forward_hook(replace_tokens)
        try:
            reconstruction = self.backbone(x.masked_fill(voxels_masked, 0.0))  # hidden from the skip path too
        finally:
            handle.remove()
        return {"loss": masked_l1(reconstruction, x, voxels_masked)}
