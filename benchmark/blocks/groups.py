"""Backbone groups methods declare support for (the registered backbones by dimensionality)."""
from __future__ import annotations

BACKBONES_2D = ("unet2d", "vgg_unet", "vgg16_unet", "resnet_unet")
BACKBONES_3D = ("swin_unetr", "vit", "unetr")
ALL_BACKBONES = BACKBONES_2D + BACKBONES_3D


def unsupported(backbones: tuple[str, ...], reason: str) -> dict[str, str]:
    """{backbone: reason} for each of ``backbones`` (``PretextTask.unsupported_backbones``)."""
    return {name: reason for name in backbones}
