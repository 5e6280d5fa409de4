"""Backbone names -> MONAI / timm networks, 2D and 3D, behind one interface (``base.Backbone``).

One family per file; ``base.py`` holds the interface (multi-scale encoder features, bottleneck,
token grid where there is one, swappable input / output layers, transfer parts) and
``transfer.py`` the strict pretrained -> fine-tuning weight transfer.
"""
from benchmark.backbones.registry import (  # noqa: F401
    BACKBONES, PAPER_SIZE, SMOKE_SIZE, BackboneProfile, BackboneSize, build_backbone, list_backbones, plugin_problem,
)
from benchmark.backbones.base import Backbone, conv_like, kaiming_init  # noqa: F401
from benchmark.backbones.unet2d import UNet2D  # noqa: F401  (registration)
from benchmark.backbones.swin_unetr import SwinUNETR3D  # noqa: F401
from benchmark.backbones.vit import SeriesViTEncoder, ViTSegmenter  # noqa: F401
from benchmark.backbones.vgg_unet import VGG16UNet, VGGUNet  # noqa: F401
from benchmark.backbones.resnet_unet import ResNetUNet  # noqa: F401
from benchmark.backbones.unetr import SeriesTokenViT, UNETR3D  # noqa: F401
from benchmark.plugins import GROUPS, load_plugins

load_plugins(GROUPS["backbone"], BACKBONES, check=plugin_problem)  # separately installed backbones (entry points)

# Former private names of benchmark/backbones.py.
_kaiming_init, _conv_like = kaiming_init, conv_like
