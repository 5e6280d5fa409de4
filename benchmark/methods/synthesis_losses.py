"""Generator losses of the CoPer paper's image synthesis (III.C, eq. 5; Table III rows), as leaderboard methods.

On a synthesis task (``tasks/synthesis.py``) the compared "methods" are pix2pix generator losses, not SSL
pretrainings. The generator loss is adv·L_adv + rec·(λ1·L1 + (1 − λ1)·L_CoPer) with the CoPer loss (eqs. 3-4) on a
frozen loss network; ``balance`` says how eq. 5's weights are read (``SynthesisLossConfig``):

* ``l1``: no perceptual term (λ1 = 1): "ℓ-1 norm loss", Table III's baseline (the synthesis baseline,
  run once per loss-network backbone as scratch is for segmentation);
* ``l1+coper``: the CoPer loss on a loss network that its Config names (hyperparameters never live in names):
  ``loss_network`` = ``swav`` / ``simsiam`` (the network pretrained by the suite's own SwAV / SimSiam on the
  TARGET series only of the training cases, IV.B: "the pre-trainings were performed on specific modalities to
  extract the perceptual representations of target modalities", through the normal pretraining cache: the
  pretraining IS the registered method, looked up in the registry, not imported, on one-channel volumes of the
  target series, ``SynthesisKind.pretraining_volumes``) or ``rand`` (a seeded, randomly initialised network,
  "+ rand. VGG / ResNet": nothing pretrains); ``loss_backbone`` = ``vgg16_unet`` / ``resnet_unet`` (the Job's
  backbone; ``vgg_unet``, TernausNet's VGG11, also runs). The default, SwAV-VGG on VGG-16 (the VGG of CoPer Table II and
  of LPIPS), is the paper's best row.

The six names of earlier versions (``l1+rand_vgg``, ``l1+coper_swav_resnet``, ...) are deprecated aliases of
``l1+coper`` variants (``DEPRECATED_ALIASES``; the command line prints the new spelling). The generator is the same
for every variant (the synthesis kind's pix2pix U-Net). λ1 and the loss weights affect fine-tuning only, so they are
left out of the pretraining cache key (``pretraining_config``): a λ1 search pretrains once. So is ``feature_norm``,
how eq. 3 compares the loss network's features (``CoPerLossConfig``: raw as printed, or normalised per layer by the
target's feature energy, the default, or per channel as the CoPer metric).
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from benchmark.blocks.groups import BACKBONES_2D, BACKBONES_3D, unsupported
from benchmark.blocks.pretext import DataSpec, PretextTask, Recipe
from benchmark.methods.base import get_method, register_method, register_method_alias

LAMBDA2 = 10.0  # CoPer III.C: "We use the default setting λ2 = 10 [25] in all of our experiments"
PIX2PIX_LAMBDA = 100.0  # pix2pix [25] section 4 / its code's --lambda_L1: L = L_cGAN + λ L_L1, λ = 100
BALANCES = ("pix2pix", "eq5")
# (adversarial weight, reconstruction weight) of each reading of eq. 5 (``SynthesisLossConfig``)
BALANCE_WEIGHTS = {"pix2pix": (1.0, PIX2PIX_LAMBDA), "eq5": (LAMBDA2, 1.0)}
LOSS_NETWORKS = ("swav", "simsiam", "rand")  # Table III: "+ SwAV-", "+ SimSiam-", "+ rand." networks
LOSS_BACKBONES = ("vgg16_unet", "resnet_unet", "vgg_unet")  # Table III: "-VGG" (VGG-16, Table II), "-ResNet"; vgg_unet: VGG11
FEATURE_NORMS = ("energy", "unit", "none")  # the CoPer loss's readings of eq. 3 (benchmark.perceptual.metric.CoPerLoss)


@dataclass(frozen=True)
class SynthesisLossConfig:
    """λ1 of eq. 5 (None: the task's paper value, Fig. 8: 0.70 for T2, 0.55 for FLAIR) and how eq. 5 balances the
    reconstruction against the adversarial term (``balance``); ``reconstruction_weight`` and ``adversarial_weight``
    override the reading's weights (None: the reading's):

    * ``pix2pix`` (default): L_G = 1·L_adv + 100·(λ1·L1 + (1 − λ1)·L_CoPer). The paper writes eq. 5 as
      λ1·L1 + (1 − λ1)·L_CoPer + λ2·L_adv but sets λ2 by citing pix2pix: "We use the default setting λ2 = 10 [25]".
      pix2pix's only weight is the one on its L1 term, L_cGAN + λ·L1 with λ = 100 (its section 4 and code's
      ``--lambda_L1 100``); CoPer's appendix C takes every other pix2pix default (lr 2e-4, load 286 / crop 256,
      flips, normalisation), so its networks were most likely trained with pix2pix's balance, i.e. the cited default
      on the reconstruction side. Read literally, eq. 5 weighs L1 (0.7 at λ1 = 0.7) about 1400 times less against the
      adversarial term than pix2pix (0.07 vs 100), a GAN-dominated objective no pix2pix setting produces;
    * ``eq5``: eq. 5 as printed, L_G = 10·L_adv + 1·(λ1·L1 + (1 − λ1)·L_CoPer), the paper's λ2 = 10 on the adversarial term.

    The paper's λ2 is the reconstruction weight under ``pix2pix`` and the adversarial weight under ``eq5``; the
    deprecated override ``lambda2`` is read that way (``SynthesisLoss.make_config``), the Config holds the
    unambiguous fields."""

    lambda1: float | None = None
    balance: str = "pix2pix"
    reconstruction_weight: float | None = None  # None: the balance's (pix2pix 100, eq5 1)
    adversarial_weight: float | None = None  # None: the balance's (pix2pix 1, eq5 λ2 = 10)

    def __post_init__(self) -> None:
        if self.lambda1 is not None and not 0.0 <= self.lambda1 <= 1.0:
            raise ValueError(f"lambda1 must be in [0, 1] (eq. 5 weighs L1 by lambda1 and CoPer by 1 - lambda1), got {self.lambda1}")
        if self.balance not in BALANCES:
            raise ValueError(f"balance must be one of {', '.join(BALANCES)} (how eq. 5's λ2 is read), got {self.balance!r}")
        for name in ("reconstruction_weight", "adversarial_weight"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    def loss_weights(self) -> tuple[float, float]:
        """(adversarial weight, reconstruction weight) of the generator loss: the ``balance``'s, overridden where set."""
        adversarial, reconstruction = BALANCE_WEIGHTS[self.balance]
        return (adversarial if self.adversarial_weight is None else float(self.adversarial_weight),
                reconstruction if self.reconstruction_weight is None else float(self.reconstruction_weight))


@dataclass(frozen=True)
class CoPerLossConfig(SynthesisLossConfig):
    """eq. 5's weights, the CoPer loss network: how it is obtained (``loss_network``) and its backbone (``loss_backbone``),
    and how eq. 3 compares its features (``feature_norm``, ``benchmark.perceptual.metric.CoPerLoss``):

    * ``energy`` (default): eq. 3's squared distance of the raw ReLU activations, each layer divided by the target's
      mean squared activation (eq. 3 on the same network with every layer rescaled to unit RMS);
    * ``unit``: the CoPer metric's channel unit-normalisation (III.B, Fig. 2a; LPIPS);
    * ``none``: eq. 3-4 as printed, on the raw activations.

    Why ``energy``: the paper prints eq. 3 on raw activations (Johnson et al., its ref. [5]; its metric, Fig. 2a,
    unit-normalises as LPIPS [1] does), its code is not published, and the published numbers come from a loss whose
    two reconstruction terms were of one size: Fig. 8 trades λ1 between 0.1 and 0.9 with an interior optimum (0.70 for
    T2, 0.55 for FLAIR), which a CoPer term hundreds of times the L1 term cannot give (every λ1 < 1 would be the
    CoPer loss alone). Raw eq. 3 has that size only on a network whose activations are O(1); the suite's VGG-16 has no
    BatchNorm, and after SwAV its relu5_3 RMS is about 100 times its relu1_2's (smoke run: 83 vs 0.7), so ``none`` makes
    the CoPer term about 250 times the L1 term at λ1 = 0.7 (the untrained generator's first batch; ``energy``: 0.7
    times) and the λ1 search finds no balance. ``energy`` removes exactly that arbitrary per-layer
    scale and keeps eq. 3's distance on the ReLU features (the term is about the L1 term's size, see the README);
    ``unit`` changes the distance itself (a cosine over channels) and is kept as the metric's reading.
    The field changes fine-tuning only: it is not in the pretraining cache key."""

    loss_network: str = "swav"
    loss_backbone: str = "vgg16_unet"
    feature_norm: str = "energy"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_network not in LOSS_NETWORKS:
            raise ValueError(f"loss_network must be one of {', '.join(LOSS_NETWORKS)}, got {self.loss_network!r}")
        if self.loss_backbone not in LOSS_BACKBONES:
            raise ValueError(f"loss_backbone must be one of {', '.join(LOSS_BACKBONES)}, got {self.loss_backbone!r}")
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {', '.join(FEATURE_NORMS)} (how eq. 3 compares the loss network's "
                             f"features), got {self.feature_norm!r}")


class SynthesisLoss(PretextTask):
    """Base of the generator-loss methods: no pretraining, no transfer; the synthesis kind reads ``loss_network_of``."""

    Config = SynthesisLossConfig
    synthesis_loss: ClassVar[bool] = True  # the synthesis kind accepts exactly these methods
    pretrains = False
    paper = "coper_perceptual_metric"
    paper_recipe = Recipe(steps=0, batch_size=1, lr=0.0, source="no pretraining")
    # The Job's backbone names the loss network (and, for l1, the baseline's group); the CoPer loss is 2D (VI).
    default_backbone = "vgg16_unet"
    supported_backbones = BACKBONES_2D
    unsupported_backbones = unsupported(BACKBONES_3D, "the CoPer loss and the pix2pix generator work on 2D slices (CoPer VI)")
    # Which tasks: the task kinds decide (``SynthesisKind`` takes only these methods; the other kinds none of them).

    @classmethod
    def make_config(cls, overrides: dict[str, Any] | None = None) -> Any:
        """``PretextTask.make_config``, reading the deprecated ``lambda2`` as the weight the paper's λ2 is under the
        balance: ``reconstruction_weight`` under ``pix2pix``, ``adversarial_weight`` under ``eq5``."""
        overrides = dict(overrides or {})
        if "lambda2" in overrides:
            value = overrides.pop("lambda2")
            balance = overrides.get("balance", cls.Config.balance)
            field = "adversarial_weight" if balance == "eq5" else "reconstruction_weight"
            if field in overrides:
                raise ValueError(f"{cls.registry_name}: lambda2 (deprecated) and {field} both given; give {field} only")
            warnings.warn(f"{cls.registry_name}: lambda2 is deprecated (under balance {balance} it is {field}): use {field}={value}",
                          FutureWarning, stacklevel=2)
            overrides[field] = value
        return super().make_config(overrides)

    @classmethod
    def loss_network_of(cls, cfg: Any) -> str:
        """How the loss network is obtained: none (pure L1), rand (seeded random) or the pretext that pretrains it."""
        return "none"

    @classmethod
    def feature_norm_of(cls, cfg: Any) -> str:
        """How the CoPer loss compares the loss network's features (``CoPerLossConfig.feature_norm``); "none" without one."""
        return "none"

    @classmethod
    def lambda1(cls, cfg: SynthesisLossConfig, task: Any) -> float:
        """λ1 of eq. 5 for ``task``: 1 without a loss network (pure L1), else the Config's or the task's paper value."""
        if cls.loss_network_of(cfg) == "none":
            return 1.0
        return cfg.lambda1 if cfg.lambda1 is not None else task.paper_lambda1

    @classmethod
    def loss_weights(cls, cfg: SynthesisLossConfig, task: Any) -> tuple[float, float, float]:
        """(λ1, adversarial weight, reconstruction weight) of the generator loss on ``task`` (``SynthesisLossConfig``)."""
        return (cls.lambda1(cfg, task), *cfg.loss_weights())

    def forward(self, batch, *, generator):
        raise RuntimeError(f"{self.registry_name} is a generator loss; it has no pretext task to run")


@register_method("l1")
class L1(SynthesisLoss):
    """pix2pix with L1 + adversarial loss only (CoPer Table III baseline, "ℓ-1 norm loss")."""


@register_method("l1+coper")
class L1CoPer(SynthesisLoss):
    """L1 + CoPer loss on a SwAV / SimSiam-pretrained or random VGG / ResNet (CoPer Table III; Config: loss_network, loss_backbone, feature_norm)."""

    Config = CoPerLossConfig
    transfer = "encoder"
    trains_whole_backbone = False  # SwAV / SimSiam read the encoder only
    backbone_from_config = True  # the Job's backbone is the Config's loss_backbone

    @classmethod
    def loss_network_of(cls, cfg: CoPerLossConfig) -> str:
        return cfg.loss_network

    @classmethod
    def backbone_for(cls, cfg: CoPerLossConfig) -> str:
        return cfg.loss_backbone

    @classmethod
    def feature_norm_of(cls, cfg: CoPerLossConfig) -> str:
        return cfg.feature_norm

    @classmethod
    def pretrains_with(cls, cfg: CoPerLossConfig) -> bool:
        """A SwAV / SimSiam loss network is pretrained (on the target series); a random one is not."""
        return cfg.loss_network != "rand"

    @classmethod
    def pretext_cls(cls, cfg: CoPerLossConfig) -> type[PretextTask]:
        return get_method(cfg.loss_network)

    @classmethod
    def pretext_config(cls, cfg: CoPerLossConfig) -> Any:
        return cls.pretext_cls(cfg).make_config()

    @classmethod
    def recipe_for(cls, cfg: CoPerLossConfig) -> Recipe:
        """The pretext method's own paper recipe (SwAV's or SimSiam's)."""
        return cls.pretext_cls(cfg).paper_recipe if cls.pretrains_with(cfg) else cls.paper_recipe

    @classmethod
    def pretraining_config(cls, cfg: CoPerLossConfig) -> dict:
        """The pretraining cache key's configuration: the pretext's (λ1 only changes fine-tuning; the backbone is keyed apart)."""
        return {"pretext": cfg.loss_network, **dataclasses.asdict(cls.pretext_config(cfg))}

    @classmethod
    def backbone_channels(cls, cfg: Any, *, in_channels: int) -> tuple[int, int]:
        """One grey series in (eq. 3: the network sees each target channel y_j alone)."""
        return 1, 1

    @classmethod
    def data_spec(cls, cfg: CoPerLossConfig) -> DataSpec:
        return cls.pretext_cls(cfg).data_spec(cls.pretext_config(cfg)) if cls.pretrains_with(cfg) else DataSpec()

    def __init__(self, backbone: nn.Module, cfg: CoPerLossConfig, *, in_channels: int) -> None:
        super().__init__(backbone, cfg, in_channels=1)
        if not self.pretrains_with(cfg):
            raise ValueError("l1+coper:loss_network=rand has no pretraining (a seeded random network)")
        self.inner = self.pretext_cls(cfg)(backbone, self.pretext_config(cfg), in_channels=1)

    def configure_schedule(self, *, recipe: Recipe, steps: int) -> None:
        self.inner.configure_schedule(recipe=recipe, steps=steps)

    def forward(self, batch, *, generator):
        """Every channel of a crop is one grey sample (Table I mixes the slices of its modalities); on a synthesis
        task the crops hold the target series only (``SynthesisKind.pretraining_volumes``)."""
        image = batch["image"]  # [B, C, H, W]
        return self.inner({**batch, "image": image.reshape(-1, 1, *image.shape[2:])}, generator=generator)


# The method names of earlier versions: each is an ``l1+coper`` variant (the defaults, swav and vgg16_unet, left out; their
# "vgg" was the VGG the loss ran on, now VGG-16 as in the paper).
DEPRECATED_ALIASES = {
    "l1+rand_vgg": "l1+coper:loss_network=rand",
    "l1+rand_resnet": "l1+coper:loss_network=rand:loss_backbone=resnet_unet",
    "l1+coper_swav_vgg": "l1+coper",
    "l1+coper_swav_resnet": "l1+coper:loss_backbone=resnet_unet",
    "l1+coper_simsiam_vgg": "l1+coper:loss_network=simsiam",
    "l1+coper_simsiam_resnet": "l1+coper:loss_network=simsiam:loss_backbone=resnet_unet",
}
for _old, _new in DEPRECATED_ALIASES.items():
    register_method_alias(_old, _new)
