"""MAE3D: masked autoencoder for 3D medical images, the CSM paper's baseline (refs [1] Zhou et al. 2023, [2] He et al. 2022).

Random masking of a ratio (75%, MAE's default) of ALL tokens of a sample jointly: the series are
tokenised separately by the same ViT backbone as CSM, but no per-series structure is imposed and
no whole series is deliberately hidden. The encoder sees only the visible tokens, the light decoder
shared with CSM reconstructs every token, and the loss is the MSE on the masked patches with
per-patch normalised targets (MAE's ``norm_pix_loss``). Works for any number of series, 1 included.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.methods.base import PretextTask, register_method
from benchmark.methods.csm import CrossSeriesMasking, MaskedTokenDecoder, encode_and_decode, masked_mse, patchify


@dataclass(frozen=True)
class MAE3DConfig:
    mask_ratio: float = 0.75  # MAE default (He et al. 2022, section 4); Zhou et al. [1] keep it for 3D
    norm_pix_loss: bool = True  # target = each patch normalised by its own mean and std (MAE)
    # Same light decoder as CSM (the CSM paper does not give the baseline's decoder).
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"MAE3DConfig.mask_ratio must be in (0, 1), got {self.mask_ratio}")


def random_token_masks(batch: int, num_tokens: int, *, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """MAE random masking: exactly round(ratio·L) of the L tokens of each sample, drawn independently. [B, L] bool, True = hidden."""
    k = int(round(ratio * num_tokens))
    if not 0 < k < num_tokens:
        raise ValueError(f"mask ratio {ratio} leaves no masked or no visible token among {num_tokens}")
    scores = torch.rand(batch, num_tokens, generator=generator)
    return scores.argsort(dim=1).argsort(dim=1) < k


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE norm_pix_loss target: (p − mean) / sqrt(var + eps) per patch over its voxels [..., P] (unbiased var, as in MAE)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


@register_method("mae3d")
class MAE3D(PretextTask):
    """MAE3D baseline (CSM paper refs [1], [2]): random 75% token masking over all series jointly, masked MSE."""

    Config = MAE3DConfig
    default_backbone = "vit"
    supported_backbones = ("vit",)
    transfer = "encoder"  # as CSM: the pre-trained ViT encoder is fine-tuned with a task head
    trains_whole_backbone = False  # the segmentation decoder of the backbone is unused while pretraining
    paper = "cross_series_masking"
    paper_recipe = CrossSeriesMasking.paper_recipe  # the baseline is pretrained with the CSM recipe

    def __init__(self, backbone, cfg: MAE3DConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        self.decoder = MaskedTokenDecoder.for_encoder(backbone.encoder, cfg, num_series=in_channels)

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, S, D, H, W], one channel per series (S = 1 allowed)
        enc = self.backbone.encoder
        b, s = x.shape[:2]
        n = enc.num_patches
        mask = random_token_masks(b, s * n, ratio=self.cfg.mask_ratio, generator=generator)
        mask = mask.reshape(b, s, n).to(x.device)  # [B, S, N]
        prediction = encode_and_decode(enc, self.decoder, x, mask)  # [B, S, N, patch³]
        target = patchify(x, enc.patch)
        if self.cfg.norm_pix_loss:
            target = normalize_patches(target)
        return {"loss": masked_mse(prediction, target, mask)}
