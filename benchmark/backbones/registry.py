"""The backbone registry, the width knobs (``BackboneSize``) and ``build_backbone``."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from benchmark.backbones.base import Backbone
from benchmark.blocks.pretext import Recipe
from benchmark.registry import Registry

BACKBONES: Registry[type] = Registry("backbone")


def list_backbones() -> list[str]:
    return BACKBONES.names()


@dataclass(frozen=True)
class BackboneSize:
    """Width knobs shared by all backbones; the profile picks one (narrow for smoke, paper for paper)."""

    unet_features: tuple[int, ...] = (32, 64, 128, 256, 512, 32)
    swin_feature_size: int = 48
    swin_window: int = 7
    # Swin-UNETR's convolutional blocks' norm: "instance" (the paper's) needs the deepest map (crop / 32) to hold more
    # than one voxel; "layer" (MONAI group norm with one group: over channels and voxels) trains on 32-voxel crops.
    swin_norm: str = "instance"
    vit_dim: int = 768
    vit_depth: int = 12
    vit_heads: int = 12
    vit_patch: int = 16
    # vgg_unet / vgg16_unet: multiplies VGG11's / VGG-16's widths (64..512) and TernausNet's 32 decoder filters; 1.0 is the
    # paper's network.
    vgg_width: float = 1.0
    # resnet_unet: timm ResNet depth (18 / 34 / 50 / 101 / 152) and a multiplier of its stage widths (64..512)
    # and of the decoder widths; depth 50 at width 1.0 is the CoPer paper's ResNet-50 (section IV.A).
    resnet_depth: int = 50
    resnet_width: float = 1.0
    # pix2pix (the synthesis kind's generator and discriminator, benchmark/synthesis/pix2pix.py): ngf = ndf, the filters of
    # the first layer (pix2pix's 64: U-Net-256 C64-...-C512, 70x70 PatchGAN C64-C128-C256-C512).
    pix2pix_filters: int = 64
    # unetr: MONAI UNETR's feature_size, the width of its convolutional decoder (16: MONAI's and the UNETR paper's default,
    # Hatamizadeh et al. 2022 section 4); its ViT takes vit_dim / vit_heads (12 blocks and 16^3 patches are fixed by MONAI).
    unetr_feature_size: int = 16


# Smoke: window 4 because 7 pads the tiny feature maps of a 64x64x32 crop (3x slower on CPU).
SMOKE_SIZE = BackboneSize(unet_features=(16, 32, 64, 128, 128, 16), swin_feature_size=12, swin_window=4, swin_norm="layer", vit_dim=48, vit_depth=2, vit_heads=4, vit_patch=8, vgg_width=0.25,
                        resnet_depth=18, resnet_width=0.25, pix2pix_filters=16, unetr_feature_size=8)
PAPER_SIZE = BackboneSize()


@dataclass(frozen=True)
class BackboneProfile:
    """What a run profile needs of a backbone it does not list itself (a plugin's, ``Backbone.profiles``): the training
    crop / inference window, the fine-tuning recipe (every method on the backbone fine-tunes alike) and, for the smoke
    profile (tiny: the same with 2 steps per stage), the pretraining recipe of every method on it."""

    roi: tuple[int, ...]
    finetune: Recipe
    pretrain: Recipe | None = None


PROFILE_NAMES = ("smoke", "paper")  # what a plugin backbone declares (tiny is smoke's)


def plugin_problem(cls) -> str | None:
    """Why an entry point's object (``benchmark.plugins``) cannot be a backbone, or None."""
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        return f"{cls!r} is not a backbone class: expected a subclass of benchmark.backbones.base.Backbone"
    name = cls.__name__
    if getattr(cls, "spatial_dims", None) not in (2, 3):
        return f"{name}.spatial_dims is {getattr(cls, 'spatial_dims', None)!r}; expected 2 (slice-wise) or 3 (volumetric)"
    missing = [a for a in ("encoder_prefixes", "input_prefixes", "output_prefixes") if not isinstance(getattr(cls, a, None), tuple)]
    if missing:
        return f"{name} declares no {' / '.join(missing)}: expected tuples of parameter-name prefixes (its transfer parts)"
    profiles = getattr(cls, "profiles", None) or {}
    absent = [p for p in PROFILE_NAMES if not isinstance(profiles.get(p), BackboneProfile)]
    if absent or profiles["smoke"].pretrain is None:
        return (f"{name}.profiles lacks {absent or ['a smoke pretrain recipe']}: expected {{'smoke': BackboneProfile(roi, finetune, pretrain), "
                "'paper': BackboneProfile(roi, finetune)}} (benchmark.backbones.registry.BackboneProfile)")
    return None


def build_backbone(name: str, *, in_channels: int, out_channels: int, size: BackboneSize, roi: tuple[int, ...]) -> nn.Module:
    return BACKBONES.get(name)(in_channels=in_channels, out_channels=out_channels, size=size, roi=roi)
