"""Cross-series masking (Li et al., "Cross-Series Masking", section III.B).

Every series of a multi-series scan is patchified separately. Intra-series masking hides a
ratio (87.5%) of the patches of each series with an independent random mask per series;
inter-series masking hides k ∈ [1, s−1] whole series. A ViT encoder sees only the visible
patches (eq. 1), a light decoder reconstructs every token, and the loss is the MSE on the
masked patches and masked series (eq. 2).

The ablations of section IV.C (tables VII/VIII) are configuration, not classes:
``same_position_masks`` (random patch-mask ×), ``series_masking=False`` (series-mask ×),
``reconstruct_masked_series=False`` (series-mask ○) and ``mask_ratio=0.5``.

Backbones: those with a series-token encoder (``Backbone.token_encoder``): the ViT and UNETR (whose
MONAI ViT tokenises every series separately, as the CSM paper's ViT-B/16). The method needs every
series tokenised separately and an encoder that sees only the visible tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.groups import BACKBONES_2D, unsupported
from benchmark.blocks.heads import MaskedTokenDecoder, encode_and_decode, token_encoder
from benchmark.blocks.losses import masked_mse, normalize_patches
from benchmark.blocks.masking import cross_series_masks, patchify
from benchmark.blocks.recipes import CSM_PAPER_RECIPE
from benchmark.methods.base import PretextTask, register_method


@dataclass(frozen=True)
class CSMConfig:
    mask_ratio: float = 0.875  # intra-series patch mask ratio (section III.B / IV)
    # The paper does not give the decoder size; an MAE-style light decoder (He et al. 2022).
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    # Ablations of section IV.C (tables VII / VIII); the defaults are the full method (row 1).
    same_position_masks: bool = False  # "random patch-mask ×": one patch mask shared by every series
    series_masking: bool = True  # False: "series-mask ×", no whole series hidden (k = 0)
    reconstruct_masked_series: bool = True  # False: "series-mask ○", hidden series are not in the loss
    # Eq. 2 compares with "the original unmasked series": raw targets. True normalises each patch by its
    # mean and std (MAE's norm_pix_loss); MAE3D has the same switch and default, so the two differ only in masking.
    norm_pix_loss: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not self.series_masking and not self.reconstruct_masked_series:
            raise ValueError(
                "CSMConfig: reconstruct_masked_series=False only has a meaning with series_masking=True "
                "(no series is masked when series_masking=False); set reconstruct_masked_series=True"
            )


@register_method("csm")
class CrossSeriesMasking(PretextTask):
    """CSM: intra- + inter-series masking, MAE-style ViT encoder/decoder, masked MSE (CSM paper III.B)."""

    Config = CSMConfig
    default_backbone = "vit"
    supported_backbones = ("vit", "unetr")
    unsupported_backbones = {
        **unsupported(("swin_unetr",), "cross-series masking tokenises every series separately and encodes only the visible "
                                       "tokens (CSM III.B); Swin-UNETR embeds all series into one token and its windowed "
                                       "attention needs the full token grid"),
        **unsupported(BACKBONES_2D, "cross-series masking tokenises 3D series into per-series patch tokens (CSM III.B); "
                                    "a convolutional 2D network has no tokens"),
    }
    transfer = "encoder"  # section III.C: the pre-trained encoder is fine-tuned with a task head
    trains_whole_backbone = False  # the segmentation decoder of the backbone is unused while pretraining
    paper = "cross_series_masking"
    pretrain_aug = "csm"  # CSM IV.A: "While pretraining, we randomly flip and crop" (the crop is the dataset's)
    paper_recipe = CSM_PAPER_RECIPE

    def __init__(self, backbone, cfg: CSMConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        self.decoder = MaskedTokenDecoder.for_encoder(token_encoder(backbone, 'csm'), cfg, num_series=in_channels)

    @classmethod
    def unsupported_reason(cls, *, task, backbone):
        if len(task.channels) < 2:
            return f"cross-series masking needs >= 2 series; task {task.name!r} has {len(task.channels)} ({', '.join(task.channels)})"
        return super().unsupported_reason(task=task, backbone=backbone)

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, S, D, H, W], one channel per series
        enc = self.backbone.token_encoder
        b, s = x.shape[:2]
        cfg = self.cfg
        mask, masked_series = cross_series_masks(
            b, s, enc.num_patches, ratio=cfg.mask_ratio, generator=generator,
            same_position_masks=cfg.same_position_masks, series_masking=cfg.series_masking,
        )
        mask, masked_series = mask.to(x.device), masked_series.to(x.device)  # [B, S, N], [B, S]
        prediction = encode_and_decode(enc, self.decoder, x, mask)  # [B, S, N, patch³]
        # Eq. 2 covers masked patches and masked series; ablation "series-mask ○" drops the latter.
        loss_mask = mask if cfg.reconstruct_masked_series else mask & ~masked_series[..., None]
        target = patchify(x, enc.patch)  # [B, S, N, patch³]
        if cfg.norm_pix_loss:
            target = normalize_patches(target)
        return {"loss": masked_mse(prediction, target, loss_mask)}
