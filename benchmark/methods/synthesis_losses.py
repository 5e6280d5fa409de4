"""Generator losses of the CoPer paper's image synthesis (III.C, eq. 5; Table III rows), as leaderboard methods.

On a synthesis task (``tasks/synthesis.py``) the compared "methods" are pix2pix generator losses, not SSL
pretrainings: L_G = λ1·L1 + (1 − λ1)·L_CoPer + λ2·L_adv (eq. 5, λ2 = 10) with the CoPer loss (eqs. 3-4)
on a frozen loss network:

* ``l1``: no perceptual term (λ1 = 1): "ℓ-1 norm loss", Table III's baseline (the synthesis baseline,
  run once per loss-network backbone as scratch is for segmentation);
* ``l1+rand_vgg`` / ``l1+rand_resnet``: a seeded, randomly initialised network ("+ rand. VGG / ResNet");
* ``l1+coper_{swav,simsiam}_{vgg,resnet}``: the network pretrained by the suite's own SwAV / SimSiam on the
  TARGET series only of the training cases (IV.B: "the pre-trainings were performed on specific
  modalities to extract the perceptual representations of target modalities"), through the normal
  pretraining cache: this class's pretraining IS the registered ``swav`` / ``simsiam`` method (looked up in
  the registry, not imported), on one-channel volumes of the target series (``SynthesisKind.pretraining_volumes``).

The Job's backbone is the loss network (vgg_unet / resnet_unet); the generator is the same for every
variant (the synthesis kind's MONAI U-Net). λ1 is the only Config field and affects fine-tuning only, so it
is left out of the pretraining cache key (``pretraining_config``): a λ1 search pretrains once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from benchmark.blocks.groups import BACKBONES_2D, BACKBONES_3D, unsupported
from benchmark.blocks.pretext import DataSpec, PretextTask, Recipe
from benchmark.methods.base import get_method, register_method

LAMBDA2 = 10.0  # CoPer III.C: "We use the default setting λ2 = 10 [25] in all of our experiments"


@dataclass(frozen=True)
class SynthesisLossConfig:
    """λ1 of eq. 5 (None: the task's paper value, Fig. 8: 0.70 for T2, 0.55 for FLAIR); λ2 = 10 (III.C)."""

    lambda1: float | None = None
    lambda2: float = LAMBDA2

    def __post_init__(self) -> None:
        if self.lambda1 is not None and not 0.0 <= self.lambda1 <= 1.0:
            raise ValueError(f"lambda1 must be in [0, 1] (eq. 5 weighs L1 by lambda1 and CoPer by 1 - lambda1), got {self.lambda1}")
        if self.lambda2 < 0:
            raise ValueError(f"lambda2 must be >= 0, got {self.lambda2}")


class SynthesisLoss(PretextTask):
    """Base of the generator-loss methods: no pretraining, no transfer; the synthesis kind reads ``loss_network``."""

    Config = SynthesisLossConfig
    synthesis_loss: ClassVar[bool] = True  # the synthesis kind accepts exactly these methods
    loss_network: ClassVar[str] = "none"  # none | rand | swav | simsiam
    network_backbone: ClassVar[str | None] = None  # the loss network's backbone (None: any, unused)
    pretrains = False
    paper = "coper_perceptual_metric"
    paper_recipe = Recipe(steps=0, batch_size=1, lr=0.0, source="no pretraining")
    # The Job's backbone names the loss network (and, for l1, the baseline's group); the CoPer loss is 2D (VI).
    default_backbone = "vgg_unet"
    supported_backbones = BACKBONES_2D
    unsupported_backbones = unsupported(BACKBONES_3D, "the CoPer loss and the pix2pix generator work on 2D slices (CoPer VI)")
    # Which tasks: the task kinds decide (``SynthesisKind`` takes only these methods; the other kinds none of them).

    @classmethod
    def lambda1(cls, cfg: SynthesisLossConfig, task: Any) -> float:
        """λ1 of eq. 5 for ``task``: 1 without a loss network (pure L1), else the Config's or the task's paper value."""
        if cls.loss_network == "none":
            return 1.0
        return cfg.lambda1 if cfg.lambda1 is not None else task.paper_lambda1

    def forward(self, batch, *, generator):
        raise RuntimeError(f"{self.registry_name} is a generator loss; it has no pretext task to run")


class PretrainedLoss(SynthesisLoss):
    """A loss network pretrained by the registered ``pretext`` method (SwAV / SimSiam) on the target series.

    Pretraining delegates to that method: same Config (its paper defaults), recipe, data spec and forward."""

    pretrains = True
    transfer = "encoder"
    trains_whole_backbone = False  # SwAV / SimSiam read the encoder only
    pretext: ClassVar[str]

    @classmethod
    def pretext_cls(cls) -> type[PretextTask]:
        return get_method(cls.pretext)

    @classmethod
    def pretext_config(cls) -> Any:
        return cls.pretext_cls().make_config()

    @classmethod
    def pretraining_config(cls, cfg: Any) -> dict:
        """The pretraining cache key's configuration: the pretext's (λ1 only changes fine-tuning)."""
        return {"pretext": cls.pretext, **dataclasses.asdict(cls.pretext_config())}

    @classmethod
    def backbone_channels(cls, cfg: Any, *, in_channels: int) -> tuple[int, int]:
        """One grey series in (eq. 3: the network sees each target channel y_j alone)."""
        return 1, 1

    @classmethod
    def data_spec(cls, cfg: Any) -> DataSpec:
        return cls.pretext_cls().data_spec(cls.pretext_config())

    def __init__(self, backbone: nn.Module, cfg: Any, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=1)
        self.inner = self.pretext_cls()(backbone, self.pretext_config(), in_channels=1)

    def configure_schedule(self, *, recipe: Recipe, steps: int) -> None:
        self.inner.configure_schedule(recipe=recipe, steps=steps)

    def forward(self, batch, *, generator):
        """Every channel of a crop is one grey sample (Table I mixes the slices of its modalities); on a synthesis
        task the crops hold the target series only (``SynthesisKind.pretraining_volumes``)."""
        image = batch["image"]  # [B, C, H, W]
        return self.inner({**batch, "image": image.reshape(-1, 1, *image.shape[2:])}, generator=generator)


def _only(backbone: str) -> dict[str, str]:
    return {b: f"the loss network of this method is {backbone!r} by its name" if b in BACKBONES_2D else
            "the CoPer loss and the pix2pix generator work on 2D slices (CoPer VI)" for b in (*BACKBONES_2D, *BACKBONES_3D) if b != backbone}


@register_method("l1")
class L1(SynthesisLoss):
    """pix2pix with L1 + adversarial loss only (CoPer Table III baseline, "ℓ-1 norm loss")."""

    loss_network = "none"


@register_method("l1+rand_vgg")
class L1RandVGG(SynthesisLoss):
    """L1 + CoPer loss on a seeded random VGG (CoPer Table III, "+ rand. VGG")."""

    loss_network, network_backbone, default_backbone = "rand", "vgg_unet", "vgg_unet"
    supported_backbones, unsupported_backbones = ("vgg_unet",), _only("vgg_unet")


@register_method("l1+rand_resnet")
class L1RandResNet(SynthesisLoss):
    """L1 + CoPer loss on a seeded random ResNet (CoPer Table III, "+ rand. ResNet")."""

    loss_network, network_backbone, default_backbone = "rand", "resnet_unet", "resnet_unet"
    supported_backbones, unsupported_backbones = ("resnet_unet",), _only("resnet_unet")


@register_method("l1+coper_swav_vgg")
class L1CoPerSwAVVGG(PretrainedLoss):
    """L1 + CoPer loss on a SwAV-pretrained VGG, pretrained on the target series (CoPer Table III, "+ SwAV-VGG")."""

    loss_network = pretext = "swav"
    network_backbone = default_backbone = "vgg_unet"
    supported_backbones, unsupported_backbones = ("vgg_unet",), _only("vgg_unet")


@register_method("l1+coper_swav_resnet")
class L1CoPerSwAVResNet(PretrainedLoss):
    """L1 + CoPer loss on a SwAV-pretrained ResNet, pretrained on the target series (CoPer Table III, "+ SwAV-ResNet")."""

    loss_network = pretext = "swav"
    network_backbone = default_backbone = "resnet_unet"
    supported_backbones, unsupported_backbones = ("resnet_unet",), _only("resnet_unet")


@register_method("l1+coper_simsiam_vgg")
class L1CoPerSimSiamVGG(PretrainedLoss):
    """L1 + CoPer loss on a SimSiam-pretrained VGG, pretrained on the target series (CoPer Table III, "+ SimSiam-VGG")."""

    loss_network = pretext = "simsiam"
    network_backbone = default_backbone = "vgg_unet"
    supported_backbones, unsupported_backbones = ("vgg_unet",), _only("vgg_unet")


@register_method("l1+coper_simsiam_resnet")
class L1CoPerSimSiamResNet(PretrainedLoss):
    """L1 + CoPer loss on a SimSiam-pretrained ResNet, pretrained on the target series (CoPer Table III, "+ SimSiam-ResNet")."""

    loss_network = pretext = "simsiam"
    network_backbone = default_backbone = "resnet_unet"
    supported_backbones, unsupported_backbones = ("resnet_unet",), _only("resnet_unet")


class _RecipeFromPretext:
    """``paper_recipe`` of a pretrained loss = its pretext method's, read at access time (registry lookup)."""

    def __get__(self, obj, owner) -> Recipe:
        return get_method(owner.pretext).paper_recipe


PretrainedLoss.paper_recipe = _RecipeFromPretext()
