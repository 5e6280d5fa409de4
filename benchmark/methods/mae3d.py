"""MAE3D: masked autoencoder for 3D medical images, the CSM paper's baseline (refs [1] Zhou et al. 2023, [2] He et al. 2022).

MAE3D is a single-image-series method (CSM paper, section I: MAE3D and Zhou et al. "have only
concentrated on single image series representation"): a token covers every series at its position,
so a position is either visible in all series or masked in all of them. The series are tokenised
separately by the same ViT as CSM (so both methods pretrain the same encoder), but the mask is drawn
over POSITIONS: exactly round(ratio·N) of the N positions of a sample (75%, MAE's default), the same
positions in every series. Masking each series independently is CSM's own "random patch-mask"
ingredient (CSM Table VII, 0.797 -> 0.835), which its baseline must not get; no whole series is hidden.

The encoder sees only the visible tokens, the light decoder shared with CSM
(``benchmark.blocks.heads.MaskedTokenDecoder``) reconstructs every token, and the loss is the MSE on
the masked patches. Targets: raw voxel values, as CSM's eq. 2 ("the differences between the
reconstructed series and the original unmasked series in mean squared error"); neither paper asks for
MAE's ``norm_pix_loss``, so both methods default to it off (``norm_pix_loss`` switches it on for
either), and MAE3D differs from CSM only in its masking, which is what the CSM paper compares.
Works for any number of series, 1 included.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.groups import BACKBONES_2D, unsupported
from benchmark.blocks.heads import MaskedTokenDecoder, encode_and_decode, token_encoder
from benchmark.blocks.losses import masked_mse, normalize_patches
from benchmark.blocks.masking import patchify, random_token_masks
from benchmark.blocks.recipes import CSM_PAPER_RECIPE
from benchmark.methods.base import PretextTask, register_method


@dataclass(frozen=True)
class MAE3DConfig:
    mask_ratio: float = 0.75  # MAE default (He et al. 2022, section 4); Zhou et al. [1] keep it for 3D
    # Raw targets, as CSM (module docstring); True: each patch normalised by its own mean and std (MAE).
    norm_pix_loss: bool = False
    # Same light decoder as CSM (the CSM paper does not give the baseline's decoder).
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"MAE3DConfig.mask_ratio must be in (0, 1), got {self.mask_ratio}")


@register_method("mae3d")
class MAE3D(PretextTask):
    """MAE3D baseline (CSM paper refs [1], [2]): random 75% of the positions masked in every series, masked MSE."""

    Config = MAE3DConfig
    default_backbone = "vit"
    supported_backbones = ("vit", "unetr")  # the series-token encoders (CSM IV.A: the ViT-B/16 of every SSL row)
    unsupported_backbones = {
        **unsupported(("swin_unetr",), "MAE's encoder sees only the visible tokens (He et al. 2022); Swin-UNETR's windowed "
                                       "attention needs the full token grid, so it has no token encoder"),
        **unsupported(BACKBONES_2D, "MAE3D masks 3D patch tokens of the series-token ViT; a convolutional 2D network has no tokens"),
    }
    transfer = "encoder"  # as CSM: the pre-trained ViT encoder is fine-tuned with a task head
    trains_whole_backbone = False  # the segmentation decoder of the backbone is unused while pretraining
    paper = "cross_series_masking"
    pretrain_aug = "csm"  # CSM IV.A: the paper's pretraining pipeline ("we randomly flip and crop"), its baselines alike
    paper_recipe = CSM_PAPER_RECIPE  # the baseline is pretrained with the CSM recipe

    def __init__(self, backbone, cfg: MAE3DConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        self.decoder = MaskedTokenDecoder.for_encoder(token_encoder(backbone, 'mae3d'), cfg, num_series=in_channels)

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, S, D, H, W], one channel per series (S = 1 allowed)
        enc = self.backbone.token_encoder
        b, s = x.shape[:2]
        n = enc.num_patches
        positions = random_token_masks(b, n, ratio=self.cfg.mask_ratio, generator=generator)  # [B, N]
        mask = positions[:, None].expand(b, s, n).contiguous().to(x.device)  # [B, S, N]: a position masked in every series
        prediction = encode_and_decode(enc, self.decoder, x, mask)  # [B, S, N, patch³]
        target = patchify(x, enc.patch)
        if self.cfg.norm_pix_loss:
            target = normalize_patches(target)
        return {"loss": masked_mse(prediction, target, mask)}
