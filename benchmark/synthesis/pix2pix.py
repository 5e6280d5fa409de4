"""pix2pix (Isola et al. 2017) extended to m inputs -> n targets with the CoPer loss (CoPer paper III.C, Fig. 2b,
appendix C), as the authors' PyTorch code builds it (github.com/junyanz/pytorch-CycleGAN-and-pix2pix, whose defaults
CoPer's appendix C restates: load 286, crop 256, normalisation 0.5 / 0.5, lr 2e-4).

* generator G: ``UNetGenerator``, pix2pix's U-Net (appendix 6.1.1; the code's ``UnetGenerator``, ``unet_256``):
  encoder C64-C128-C256-C512-C512-C512-C512-C512 (4x4 convs, stride 2, LeakyReLU 0.2, no norm on the first and the
  innermost), decoder mirrored with skip connections, dropout 0.5, ReLU, a last transposed conv to the targets and
  tanh; sources [B, m, H, W] in [-1, 1] -> targets [B, n, H, W] in [-1, 1] (``scaling``: the pix2pix domain);
* discriminator D: MONAI ``PatchDiscriminator`` = pix2pix's 70x70 PatchGAN (``n_layers_D`` 3: C64-C128-C256-C512, a
  1-channel 4x4 conv), conditional: it sees (X, Y) concatenated on channels;
* weights initialised as pix2pix's ``init_weights('normal', 0.02)``: convolutions N(0, 0.02), norm scales N(1, 0.02);
* generator loss (``LossWeights``, ``benchmark/methods/synthesis_losses.py``): adv·L_adv + rec·(λ1·L1 + (1 − λ1)·L_CoPer),
  the adversarial term pix2pix's non-saturating BCE(D(X, G(X)), real) (MONAI ``PatchAdversarialLoss``, bce); the L1 of
  eq. 1 on the [-1, 1] images as pix2pix, the CoPer loss (eqs. 3-4) on its network's z-scored scale (``scaling``);
* discriminator loss (eq. 6, L_D = −L_adv): ½·[BCE(D(X, Y), real) + BCE(D(X, G(X)), fake)] (pix2pix halves it), by its
  own Adam (lr of the recipe, β1 0.5 as pix2pix); G's optimiser is the recipe's (Adam, β1 0.5: ``Recipe.momentum``).

Where this differs from the code, on purpose:

* normalisation: instance norm with an affine scale and shift where pix2pix has BatchNorm. pix2pix trains with batch 1
  and tests with "the statistics of the test batch" (section 3.3), i.e. it normalises every image by its own
  statistics in both phases: instance normalisation, which here stays so whatever batch the profile uses (smoke 4,
  the sliding window's 16 slices) and has BatchNorm's parameters (same count, same output at batch 1);
* dropout: active in training only; pix2pix keeps it at test time as its noise (3.3). Evaluation and model selection
  here are deterministic;
* dropout sits on the ``depth - 5`` blocks outside the innermost, as the code's ``UnetGenerator`` has it (the
  appendix's listing CD512-CD512-CD512-C512 puts it on the innermost three decoder layers);
* depth: 8 levels at 256 x 256 crops (``unet_256``: a 1 x 1 bottleneck); a smaller crop has as many levels as halve it
  (the smoke profile's 64: 6, ``unet_64``), at least 5. ``BackboneSize.pix2pix_filters`` is ngf = ndf (64: the paper's).

D is trained by its own optimiser (``GanTrainer.discriminator_step``) on a detached G(X): the generator's optimiser
never holds D's parameters, and D's parameters are frozen during the generator's pass, so D gets gradients from its own
step only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.perceptual.metric import CoPerLoss
from benchmark.synthesis.scaling import to_zscore

MAX_DEPTH = 8  # unet_256
MIN_DEPTH = 5  # C64-C128-C256-C512 + an innermost C512: the narrowest U-Net of pix2pix's recursion
DROPOUT = 0.5
INIT_STD = 0.02  # pix2pix --init_type normal --init_gain 0.02


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


def generator_depth(roi) -> int:
    """Levels of the U-Net for a crop ``roi`` (H, W): as many as halve both sides, at most 8 (unet_256)."""
    depth = 0
    while depth < MAX_DEPTH and all(r % 2 ** (depth + 1) == 0 for r in roi):
        depth += 1
    if depth < MIN_DEPTH:
        raise ValueError(f"pix2pix's U-Net needs a 2D crop whose sides are multiples of {2 ** MIN_DEPTH}, got roi {tuple(roi)}")
    return depth


class UNetGenerator(nn.Module):
    """pix2pix's U-Net generator (module docstring): ``depth`` levels, ngf = ``filters``; level i has filters·min(2^i, 8)
    channels. ``down[i]``: Conv 4x4/2 · [norm], after a LeakyReLU 0.2 from level 1 on; ``up[i]``: ReLU · ConvTranspose
    4x4/2 · norm [· dropout] (the outermost: ReLU · ConvTranspose to the targets, with bias · tanh). Convolutions followed
    by a norm have no bias. The skip connections carry the LeakyReLU's output, not its input: the code's
    ``UnetSkipConnectionBlock`` returns ``cat([x, model(x)])`` and ``model`` starts with an in-place LeakyReLU of ``x``."""

    def __init__(self, *, in_channels: int, out_channels: int, filters: int = 64, depth: int = MAX_DEPTH, dropout: float = DROPOUT) -> None:
        super().__init__()
        if depth < MIN_DEPTH or filters < 1:
            raise ValueError(f"UNetGenerator: depth must be >= {MIN_DEPTH} and filters >= 1, got depth {depth}, filters {filters}")
        widths = [filters * min(2 ** i, 8) for i in range(depth)]  # C64-C128-C256-C512-C512-...
        self.down = nn.ModuleList()
        for i, width in enumerate(widths):
            layers: list[nn.Module] = [nn.Conv2d(in_channels if i == 0 else widths[i - 1], width, kernel_size=4, stride=2, padding=1, bias=False)]
            if 0 < i < depth - 1:  # neither the outermost nor the innermost (its output is 1 x 1 at full depth) is normalised
                layers.append(_norm(width))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for i, width in enumerate(widths):
            incoming = width if i == depth - 1 else 2 * width  # the innermost reads the bottleneck; the others [skip, up]
            if i == 0:
                layers = [nn.ReLU(), nn.ConvTranspose2d(incoming, out_channels, kernel_size=4, stride=2, padding=1), nn.Tanh()]
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(incoming, widths[i - 1], kernel_size=4, stride=2, padding=1, bias=False),
                          _norm(widths[i - 1])]
                if dropout and MIN_DEPTH - 1 <= i < depth - 1:  # the code's ``num_downs - 5`` ngf*8 blocks outside the innermost
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        self.depth, self.filters = depth, filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, m, H, W] -> [B, n, H, W] in [-1, 1]
        skips = []  # skips[i]: what level i + 1 reads and its up-path concatenates (LeakyReLU'd from level 1 on)
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else skips[-1])
            skips.append(F.leaky_relu(x, 0.2) if i < self.depth - 1 else x)
        y = self.up[-1](skips[-1])  # the innermost: ReLU of the bottleneck, [B, 8 ngf, 1, 1] at full depth
        for i in range(self.depth - 2, -1, -1):
            y = self.up[i](torch.cat([skips[i], y], dim=1))
        return y


def pix2pix_init(module: nn.Module) -> nn.Module:
    """pix2pix's ``init_weights(net, 'normal', 0.02)``: conv weights N(0, 0.02), biases 0, norm scales N(1, 0.02), shifts 0
    (from the global RNG, which the loops seed per cell)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, INIT_STD)
            nn.init.zeros_(m.bias)
    return module


def build_generator(*, in_channels: int, out_channels: int, filters: int, roi) -> UNetGenerator:
    """The generator for crops ``roi``: U-Net-256 at 256 x 256 (``generator_depth``), pix2pix-initialised."""
    return pix2pix_init(UNetGenerator(in_channels=in_channels, out_channels=out_channels, filters=filters, depth=generator_depth(roi)))


def build_discriminator(*, source_channels: int, target_channels: int, channels: int) -> nn.Module:
    """The conditional 70x70 PatchGAN: MONAI ``PatchDiscriminator`` on (X, Y), three strided layers (pix2pix's n_layers_D = 3)."""
    from monai.networks.nets import PatchDiscriminator

    return pix2pix_init(PatchDiscriminator(spatial_dims=2, channels=channels, in_channels=source_channels + target_channels, out_channels=1,
                                           num_layers_d=3, norm="BATCH"))


@dataclass(frozen=True)
class LossWeights:
    """The generator loss adv·L_adv + rec·(λ1·L1 + (1 − λ1)·L_CoPer) (``synthesis_losses.SynthesisLossConfig.weights``)."""

    lambda1: float
    adversarial: float
    reconstruction: float


class Pix2Pix(nn.Module):
    """The fine-tuned model of a synthesis task: generator G (the only trained, selected and saved part), the CoPer loss
    on the variant's frozen loss network (None for ``l1``) and the loss weights. ``forward`` is G.

    ``evaluator`` (``benchmark.synthesis.evaluation.Evaluator``: the segmentation model and metric networks)
    is kept out of the module tree, so model selection's state copies hold the generator only."""

    def __init__(self, generator: nn.Module, *, coper: CoPerLoss | None, weights: LossWeights,
                 discriminator_channels: int, discriminator_lr: float, source_channels: int, target_channels: int) -> None:
        super().__init__()
        self.generator = generator
        self.weights = weights
        self.discriminator_channels, self.discriminator_lr = discriminator_channels, discriminator_lr
        self.source_channels, self.target_channels = source_channels, target_channels
        self.__dict__["coper"] = coper  # not a submodule: its network is frozen and not saved with G
        self.__dict__["evaluator"] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, m, H, W] -> [B, n, H, W]
        return self.generator(x)

    def to(self, *args, **kwargs) -> "Pix2Pix":
        super().to(*args, **kwargs)
        if self.coper is not None:
            self.coper.to(*args, **kwargs)
        return self


def _adversarial():
    from monai.losses import PatchAdversarialLoss

    return PatchAdversarialLoss(criterion="bce")


def patch_logits(discriminator: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """D's last output (MONAI's PatchDiscriminator returns every layer's map; the last is the patch logits)."""
    return discriminator(torch.cat([x, y], dim=1))[-1]


def generator_loss(fake: torch.Tensor, real: torch.Tensor, x: torch.Tensor, *, discriminator: nn.Module, coper: CoPerLoss | None,
                   weights: LossWeights, perceptual_inputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """{"loss": adv·L_adv + rec·(λ1·L1 + (1 − λ1)·L_CoPer), "l1", "coper", "adv"}; without a loss network L_CoPer = 0.
    ``perceptual_inputs``: (fake, real) on the loss network's scale (default: ``fake``, ``real`` as they are)."""
    l1 = F.l1_loss(fake, real)  # eq. 1
    if coper is not None:
        pf, pr = perceptual_inputs if perceptual_inputs is not None else (fake, real)
        perceptual = coper(pf, pr)  # eqs. 3-4
    else:
        perceptual = fake.new_zeros(())
    adv = _adversarial()(patch_logits(discriminator, x, fake), target_is_real=True, for_discriminator=False)
    reconstruction = weights.lambda1 * l1 + (1.0 - weights.lambda1) * perceptual
    return {"loss": weights.adversarial * adv + weights.reconstruction * reconstruction, "l1": l1, "coper": perceptual, "adv": adv}


def discriminator_loss(fake: torch.Tensor, real: torch.Tensor, x: torch.Tensor, *, discriminator: nn.Module) -> torch.Tensor:
    """Eq. 6 (L_D = −L_adv) as pix2pix trains it: ½·[BCE(D(X, Y), 1) + BCE(D(X, G(X)), 0)], G(X) detached."""
    adversarial = _adversarial()
    real_term = adversarial(patch_logits(discriminator, x, real), target_is_real=True, for_discriminator=True)
    fake_term = adversarial(patch_logits(discriminator, x, fake.detach()), target_is_real=False, for_discriminator=True)
    return 0.5 * (real_term + fake_term)


class GanTrainer:
    """One pix2pix iteration per call on a ``data.SliceJitterDataset`` batch: D's own step on (X, Y) vs (X, G(X)), then
    the generator's loss, which the caller's optimiser (``benchmark.train``) back-propagates and steps."""

    def __init__(self, model: Pix2Pix, *, sources: tuple[int, ...], targets: tuple[int, ...]) -> None:
        self.model, self.sources, self.targets = model, list(sources), list(targets)
        self.discriminator = build_discriminator(source_channels=len(sources), target_channels=len(targets),
                                                 channels=model.discriminator_channels).to(next(model.parameters()).device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=model.discriminator_lr, betas=(0.5, 0.999))
        self.last: dict[str, float] = {}

    def split(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A sample of every series [B, C, H, W] -> (sources X [B, m, H, W], targets Y [B, n, H, W])."""
        return image[:, self.sources], image[:, self.targets]

    def zscored(self, batch: dict, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Target-series images of the pix2pix domain [B, n, H, W] -> the z-scored scale, by each sample's real slice map."""
        scale = batch["scale"][:, self.targets].to(images[0])  # [B, n, 2]
        lo, hi, mask = scale[..., 0, None, None], scale[..., 1, None, None], batch["mask"].to(images[0].device)
        return tuple(to_zscore(y, lo, hi, mask) for y in images)

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
        coper = self.model.coper
        perceptual_inputs = self.zscored(batch, fake, real) if coper is not None else None
        terms = generator_loss(fake, real, x, discriminator=self.discriminator, coper=coper, weights=self.model.weights,
                               perceptual_inputs=perceptual_inputs)
        self.last = {"d_loss": d_loss, **{k: float(v.detach()) for k, v in terms.items()}}
        return terms["loss"]
