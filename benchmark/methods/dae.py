"""Disruptive autoencoder (Valanarasu et al., "Disruptive Autoencoders", section 2, appendix G).

The input is disrupted by down- then up-sampling with linear interpolation by a factor ε (eq. 2)
and by Gaussian noise of variance σ (eq. 1) added to the resampled image (``disrupt``); its tokens are then locally masked (a ratio r of the
embedding channels of every token set to zero) and Swin-UNETR reconstructs the clean input
with an L1 loss, plus the cross-modal contrastive loss (CMCL, eq. 3-5) on the bottleneck
features: samples of the same modality (the "meta-data") are positives.

The paper pretrains on single-modality volumes from a curated multi-modal set (CT and MRI
sequences), so every pretraining sample here is ONE channel of a case with its modality
index (``DataSpec(kind="modality_crops")``); the one-channel input layer is inflated to the
task's channels at fine-tuning (``inflate_single_channel_input``).

Ablations of Tables 5 and 6 are switches of the same method: ``noise`` / ``downsampling`` /
``local_masking`` (one on, the others off: "Noise", "Downsampling", "Local Masking") and
``cmcl=False`` ("DAE w/o CMCL"); e.g. ``--hparam dae.cmcl=false``. ``cmcl_temperature_reading=exp`` reads eq. 3's
temperature literally (logits · exp(0.07)) instead of as CLIP's and the authors' code's divisor (logits / 0.07, the
default; ``benchmark.blocks.losses.cmcl_logit_scale`` says why).

Backbones: the paper's Swin-UNETR and the series-token ViT, the two with a patch embedding
(``Backbone.patch_embed``) whose tokens local masking disrupts; CMCL reads the backbone's
bottleneck during the reconstruction pass (``Backbone.forward_with_bottleneck``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.blocks.distributed import gather_no_grad, gather_with_grad
from benchmark.blocks.groups import BACKBONES_2D, BACKBONES_3D, unsupported
from benchmark.blocks.heads import linear_projection
from benchmark.blocks.losses import TEMPERATURE_READINGS, cross_modal_contrastive_loss
from benchmark.blocks.masking import local_channel_mask
from benchmark.blocks.noise import add_gaussian_noise, down_up_sample
from benchmark.blocks.recipes import DAE_PAPER_RECIPE
from benchmark.methods.base import DataSpec, PretextTask, register_method


@dataclass(frozen=True)
class DAEConfig:
    mask_ratio: float = 0.6  # r, section 3.2
    # σ is the noise VARIANCE, not the standard deviation: appendix G.1 says "the parameter σ is
    # the variance of the gaussian noise", so the added noise has std sqrt(σ) ≈ 0.316 at σ = 0.1.
    noise_variance: float = 0.1
    downsample_factor: float = 4.0  # ε, section 3.2
    # CMCL (eq. 3-4): "t ... is set to 0.07", "α in CMCL is set to 0.05 to match the range of both losses".
    cmcl_temperature: float = 0.07
    # How t scales the similarities: "divide" (cos / t, CLIP's initial scale and the authors' code) or "exp"
    # (cos · exp(t), eq. 3 as printed: a factor 1.07). Why divide is the default: ``benchmark.blocks.losses.cmcl_logit_scale``.
    cmcl_temperature_reading: str = "divide"
    cmcl_weight: float = 0.05
    projection_dim: int = 128  # CMCL embedding size: not given in the paper (CLIP-style linear projection)
    # Ablations (Tables 5-6): which disruptions and losses are on.
    noise: bool = True
    downsampling: bool = True
    local_masking: bool = True
    cmcl: bool = True

    def __post_init__(self) -> None:
        if not (self.noise or self.downsampling or self.local_masking):
            raise ValueError("DAEConfig: at least one of noise, downsampling, local_masking must be on (else nothing is disrupted)")
        if self.cmcl_temperature <= 0:
            raise ValueError(f"cmcl_temperature must be > 0, got {self.cmcl_temperature}")
        if self.cmcl_temperature_reading not in TEMPERATURE_READINGS:
            raise ValueError(f"cmcl_temperature_reading {self.cmcl_temperature_reading!r}: expected one of {', '.join(TEMPERATURE_READINGS)} "
                             "(divide: cos / t, the default; exp: cos · exp(t), DAE eq. 3 as printed)")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio r must be in [0, 1), got {self.mask_ratio}")
        if self.noise_variance < 0:
            raise ValueError(f"noise_variance σ must be >= 0, got {self.noise_variance}")
        if self.downsample_factor < 1:
            raise ValueError(f"downsample_factor ε must be >= 1, got {self.downsample_factor}")


@register_method("dae")
class DisruptiveAutoencoder(PretextTask):
    """DAE: noise + downsampling + local token-channel masking, L1 reconstruction (DAE paper section 2)."""

    Config = DAEConfig
    default_backbone = "swin_unetr"
    supported_backbones = BACKBONES_3D
    unsupported_backbones = unsupported(
        BACKBONES_2D, "local masking disrupts the channels of patch-embedding tokens (DAE section 2); "
                      "a convolutional 2D network has no patch embedding")
    transfer = "all"  # Swin-UNETR encoder and decoder transfer; the output layer is replaced (section 3.2)
    paper = "disruptive_autoencoders"
    # DAE 3.2: "The volumes were randomly cropped into 96 x 96 x 96 cubes while pre-training", nothing more; the authors'
    # pretraining code (DAE/Pretrain_full_contrast/data/data_pretrain.py) has RandSpatialCropd only.
    pretrain_aug = "none"
    paper_recipe = DAE_PAPER_RECIPE

    def __init__(self, backbone, cfg, *, in_channels):
        super().__init__(backbone, cfg, in_channels=in_channels)
        if backbone.patch_embed is None and cfg.local_masking:
            raise ValueError(f"dae: local masking needs a backbone with a patch embedding; {type(backbone).__name__} has none")
        # CMCL head on the pooled bottleneck (16 x feature_size channels for Swin-UNETR, dim for the ViT).
        self.projection = linear_projection(backbone.bottleneck_channels, cfg.projection_dim) if cfg.cmcl else None

    @classmethod
    def backbone_channels(cls, cfg, *, in_channels):
        return 1, 1  # single-modality volumes in, the same volume out (see module docstring)

    @classmethod
    def data_spec(cls, cfg):
        return DataSpec(kind="modality_crops")

    @classmethod
    def pretraining_data_problem(cls, cfg, *, modalities, global_batch):
        """CMCL contrasts samples of one modality (positives) against the others (negatives) within the global batch.
        With a single modality every pair is a positive, and a batch of two holds either a positive or a negative
        but never both: either way ``cross_modal_contrastive_loss`` is exactly 0 on every step, and "DAE" would
        silently be "DAE w/o CMCL". The paper's corpus mixes CT and four MRI sequences, batch 2 per GPU gathered
        over its GPUs."""
        if not cfg.cmcl:
            return None
        if len(set(modalities)) < 2:
            return ("dae: the cross-modal contrastive loss would be exactly 0 (one modality: every pair is a positive); pretrain on "
                    "a corpus with several modalities, e.g. --pretrain-corpus brats,btcv as the DAE paper's CT + MRI set, or run dae:cmcl=false")
        if global_batch < 3:
            return ("dae: the cross-modal contrastive loss would be exactly 0 (a global batch of < 3 samples never holds both a positive "
                    "and a negative pair); use --num-workers 2 or more (the paper gathers batch 2 per GPU over its GPUs), a larger "
                    "pretraining batch, or dae:cmcl=false")
        return None

    def disrupt(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Image-space perturbations: x̂ = D(x, ε) + N(0, σ) (section 2: "we first add noise and downsample the
        image, then add the two perturbations").

        Paper vs authors' code: the code (``main_runner.py``, choice "all") adds the noise first and then
        resamples the NOISY image by nearest neighbour, which keeps the noise variance but makes it blocky
        (one sample per ε³ block); resampling it linearly, as the paper's D is, keeps only ~20 % of its std
        (0.063 of 0.316 at ε = 4). We follow the paper's sentence and its linear D: the clean image is
        down/up-sampled linearly and the noise is added afterwards, so it reaches the network at its
        variance σ (std √σ) and per voxel (tests/test_dae.py::test_dae_input_noise_std_is_sqrt_sigma_after_downsampling).
        """
        out = down_up_sample(x, factor=self.cfg.downsample_factor) if self.cfg.downsampling else x
        if self.cfg.noise:  # same single randn draw of x's shape as before, only its place changed
            out = add_gaussian_noise(out, variance=self.cfg.noise_variance, generator=generator)
        return out

    def forward(self, batch, *, generator):
        x = batch["image"]  # [B, 1, D, H, W], one modality per sample
        disrupted = self.disrupt(x, generator=generator)
        handle = None
        if self.cfg.local_masking:
            def mask_tokens(_module, _inputs, tokens):  # tokens [B', C, *grid] after tokenisation (B' = B·series for the ViT)
                return local_channel_mask(tokens, ratio=self.cfg.mask_ratio, generator=generator)[0]

            handle = self.backbone.patch_embed.register_forward_hook(mask_tokens)
        try:
            if self.cfg.cmcl:  # the encoder's deepest map, read during the reconstruction forward
                reconstruction, bottleneck = self.backbone.forward_with_bottleneck(disrupted)
            else:
                reconstruction = self.backbone(disrupted)
        finally:
            if handle is not None:
                handle.remove()
        l1 = F.l1_loss(reconstruction, x)
        out = {"loss": l1, "l1": l1.detach()}
        if self.cfg.cmcl:
            z = self.projection(bottleneck.flatten(2).mean(dim=2))  # [B, D]
            # Over the global batch: positives and negatives come from every worker's samples.
            cmcl = cross_modal_contrastive_loss(gather_with_grad(z), gather_no_grad(batch["modality"]), temperature=self.cfg.cmcl_temperature,
                                                reading=self.cfg.cmcl_temperature_reading)
            out["loss"] = l1 + self.cfg.cmcl_weight * cmcl
            out["cmcl"] = cmcl.detach()
        return out
