"""SimSiam (Chen & He 2021), the CoPer paper's second contrastive pretraining (section IV, Table III).

Two augmented views x1, x2 of a slice go through the encoder f and a projection MLP (3 layers,
BN on every layer, no ReLU after the last); a predictor h (2-layer bottleneck MLP) maps one
view's projection to the other's. Loss: symmetric negative cosine with stop-gradient on the
target, L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 (SimSiam eq. 1-4).

Data parallel: every term of the loss involves one sample only, so no features are gathered;
only the per-sample losses are (``gather_with_grad``), so that every worker returns the mean
over all W·b samples, the loss one worker computes with batch W·b, as SwAV does. Each worker's
gradient is then W times its share, which DDP's average divides back out. Only the BatchNorm
statistics of the encoder and the MLPs are per worker (SimSiam's code uses SyncBatchNorm,
which in torch needs a GPU).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from benchmark.blocks.groups import BACKBONES_2D, BACKBONES_3D, unsupported
from benchmark.blocks.heads import pooled, simsiam_predictor, simsiam_projector
from benchmark.blocks.losses import simsiam_loss
from benchmark.blocks.multicrop import MultiCropConfig, check_view_sizes, multi_crop
from benchmark.methods.base import PretextTask, Recipe, register_method


@dataclass(frozen=True)
class SimSiamConfig(MultiCropConfig):
    """Two views with SimSiam's augmentation (MoCo v2's: 224 crops of scale 0.2-1, jitter 0.4 p 0.8, blur p 0.5, flip)."""

    global_crop_size: int = 224
    global_crop_scale: tuple[float, float] = (0.2, 1.0)
    n_local_crops: int = 0
    brightness: float = 0.4
    contrast: float = 0.4
    projection_dim: int = 2048  # SimSiam section 4: projector hidden and output 2048
    predictor_hidden_dim: int = 512  # SimSiam section 4: bottleneck 512

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_global_crops != 2 or self.n_local_crops != 0:
            raise ValueError(f"SimSiam compares exactly two views: n_global_crops=2, n_local_crops=0, got "
                             f"{self.n_global_crops}, {self.n_local_crops}")
        if self.projection_dim < 1 or self.predictor_hidden_dim < 1:
            raise ValueError(f"projection_dim and predictor_hidden_dim must be >= 1, got {self.projection_dim}, {self.predictor_hidden_dim}")






@register_method("simsiam")
class SimSiam(PretextTask):
    """SimSiam: two views, projector + predictor, symmetric negative cosine with stop-gradient (SimSiam eq. 1-4)."""

    Config = SimSiamConfig
    default_backbone = "resnet_unet"
    supported_backbones = BACKBONES_2D  # any 2D encoder: the heads read its pooled bottleneck
    unsupported_backbones = unsupported(
        BACKBONES_3D, "multi-crop views are random resized crops of 2D slices (SwAV 3.2, CoPer appendix B); "
                      "a 3D backbone needs volumes")
    transfer = "encoder"
    trains_whole_backbone = False  # the U-Net decoder is unused while pretraining
    paper = "coper_perceptual_metric"
    paper_recipe = Recipe(
        steps=None,
        epochs=400,
        batch_size=96,
        lr=0.05 * 96 / 256,
        optimizer="sgd",
        weight_decay=1e-4,
        momentum=0.9,
        schedule="cosine",
        source=(
            "CoPer does not give SimSiam's recipe. SimSiam section 4: SGD, lr = 0.05 x batch / 256, weight decay 1e-4, "
            "momentum 0.9, cosine decay; batch 96 and 400 epochs (a SimSiam Table 4 length) as CoPer's SwAV run (appendix B). "
            "SimSiam keeps the predictor's lr constant; here it follows the cosine like everything else"
        ),
    )

    def __init__(self, backbone: nn.Module, cfg: SimSiamConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=in_channels)
        d, hidden = cfg.projection_dim, cfg.predictor_hidden_dim
        # Projector on the backbone's pooled bottleneck; predictor h (SimSiam section 4).
        self.projector = simsiam_projector(backbone.bottleneck_channels, d)
        self.predictor = simsiam_predictor(d, hidden)

    def forward(self, batch, *, generator):
        x1, x2 = multi_crop(batch["image"], self.cfg, generator=generator, minimum=self.backbone.bottleneck_stride)  # 2 x [B, C, s, s]
        check_view_sizes([x1, x2], minimum=self.backbone.bottleneck_stride)
        # One encoder pass per view, as SimSiam's code (BatchNorm statistics per view).
        z1 = self.projector(pooled(self.backbone.bottleneck(x1)))  # [B, d]
        z2 = self.projector(pooled(self.backbone.bottleneck(x2)))
        return {"loss": simsiam_loss(self.predictor(z1), self.predictor(z2), z1, z2)}
