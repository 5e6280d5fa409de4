"""pix2pix (Isola et al. 2017) extended to m inputs -> n targets with the CoPer loss (CoPer paper III.C, Fig. 2b).

* generator G: a U-Net (the suite's ``unet2d`` backbone, MONAI ``BasicUNet``), sources [B, m, H, W] ->
  targets [B, n, H, W];
* discriminator D: MONAI ``PatchDiscriminator`` (a 70x70-style PatchGAN: strided 4x4 convs, BatchNorm,
  LeakyReLU 0.2), conditional as in pix2pix: it sees (X, Y) concatenated on channels;
* generator loss (eq. 5): L_G = λ1·L1 + (1 − λ1)·L_CoPer + λ2·L_adv, λ2 = 10 (III.C). The adversarial term
  is pix2pix's non-saturating form, BCE(D(X, G(X)), real) (MONAI ``PatchAdversarialLoss``, criterion bce);
* discriminator loss (eq. 6, L_D = −L_adv): ½·[BCE(D(X, Y), real) + BCE(D(X, G(X)), fake)] (pix2pix halves it).

D is trained by its own optimiser (``GanTrainer.discriminator_step``) on a detached G(X): the generator's
optimiser never holds D's parameters, and D's parameters are frozen during the generator's pass, so D gets
gradients from its own step only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.perceptual.metric import CoPerLoss, FeatureExtractor


class Pix2Pix(nn.Module):
    """The fine-tuned model of a synthesis task: generator G (the only trained, selected and saved part), the
    frozen loss network of the variant (None for ``l1``) and eq. 5's weights. ``forward`` is G.

    ``evaluator`` (``benchmark.synthesis.evaluation.Evaluator``: the segmentation model and metric networks)
    is kept out of the module tree, so model selection's state copies hold the generator only."""

    def __init__(self, generator: nn.Module, *, loss_network: FeatureExtractor | None, lambda1: float, lambda2: float,
                 discriminator_channels: int, discriminator_lr: float, source_channels: int, target_channels: int) -> None:
        super().__init__()
        self.generator = generator
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.discriminator_channels, self.discriminator_lr = discriminator_channels, discriminator_lr
        self.source_channels, self.target_channels = source_channels, target_channels
        self.__dict__["coper"] = CoPerLoss(loss_network) if loss_network is not None else None  # not a submodule: frozen, not saved
        self.__dict__["evaluator"] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, m, H, W] -> [B, n, H, W]
        return self.generator(x)

    def to(self, *args, **kwargs) -> "Pix2Pix":
        super().to(*args, **kwargs)
        if self.coper is not None:
            self.coper.to(*args, **kwargs)
        return self


def build_discriminator(*, source_channels: int, target_channels: int, channels: int) -> nn.Module:
    """The conditional PatchGAN: MONAI ``PatchDiscriminator`` on (X, Y), three strided layers (pix2pix's n_layers_D = 3)."""
    from monai.networks.nets import PatchDiscriminator

    return PatchDiscriminator(spatial_dims=2, channels=channels, in_channels=source_channels + target_channels, out_channels=1,
                              num_layers_d=3, norm="BATCH")


def _adversarial():
    from monai.losses import PatchAdversarialLoss

    return PatchAdversarialLoss(criterion="bce")


def patch_logits(discriminator: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """D's last output (MONAI's PatchDiscriminator returns every layer's map; the last is the patch logits)."""
    return discriminator(torch.cat([x, y], dim=1))[-1]


def generator_loss(fake: torch.Tensor, real: torch.Tensor, x: torch.Tensor, *, discriminator: nn.Module, coper: CoPerLoss | None,
                   lambda1: float, lambda2: float) -> dict[str, torch.Tensor]:
    """Eq. 5: {"loss": λ1·L1 + (1 − λ1)·L_CoPer + λ2·L_adv, "l1", "coper", "adv"}; without a loss network L_CoPer = 0."""
    l1 = F.l1_loss(fake, real)  # eq. 1
    perceptual = coper(fake, real) if coper is not None else fake.new_zeros(())  # eqs. 3-4
    adv = _adversarial()(patch_logits(discriminator, x, fake), target_is_real=True, for_discriminator=False)
    return {"loss": lambda1 * l1 + (1.0 - lambda1) * perceptual + lambda2 * adv, "l1": l1, "coper": perceptual, "adv": adv}


def discriminator_loss(fake: torch.Tensor, real: torch.Tensor, x: torch.Tensor, *, discriminator: nn.Module) -> torch.Tensor:
    """Eq. 6 (L_D = −L_adv) as pix2pix trains it: ½·[BCE(D(X, Y), 1) + BCE(D(X, G(X)), 0)], G(X) detached."""
    adversarial = _adversarial()
    real_term = adversarial(patch_logits(discriminator, x, real), target_is_real=True, for_discriminator=True)
    fake_term = adversarial(patch_logits(discriminator, x, fake.detach()), target_is_real=False, for_discriminator=True)
    return 0.5 * (real_term + fake_term)


class GanTrainer:
    """One pix2pix iteration per call: D's own step on (X, Y) vs (X, G(X)), then the generator's loss (eq. 5),
    which the caller's optimiser (``benchmark.train``) back-propagates and steps. Adam with β1 = 0.5 (pix2pix)."""

    def __init__(self, model: Pix2Pix, *, sources: tuple[int, ...], targets: tuple[int, ...]) -> None:
        self.model, self.sources, self.targets = model, list(sources), list(targets)
        self.discriminator = build_discriminator(source_channels=len(sources), target_channels=len(targets),
                                                 channels=model.discriminator_channels).to(next(model.parameters()).device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=model.discriminator_lr, betas=(0.5, 0.999))
        self.last: dict[str, float] = {}

    def split(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A crop of every series [B, C, H, W] -> (sources X [B, m, H, W], targets Y [B, n, H, W])."""
        return image[:, self.sources], image[:, self.targets]

    def discriminator_step(self, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> float:
        self.discriminator.requires_grad_(True)
        self.discriminator.train()
        loss = discriminator_loss(fake, real, x, discriminator=self.discriminator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def __call__(self, batch: dict) -> torch.Tensor:
        x, real = self.split(batch["image"])
        fake = self.model(x)
        d_loss = self.discriminator_step(x, real, fake)
        self.discriminator.requires_grad_(False)  # the generator's pass: D is a fixed critic, no gradient reaches it
        terms = generator_loss(fake, real, x, discriminator=self.discriminator, coper=self.model.coper,
                               lambda1=self.model.lambda1, lambda2=self.model.lambda2)
        self.last = {"d_loss": d_loss, **{k: float(v.detach()) for k, v in terms.items()}}
        return terms["loss"]
