"""The CoPer metric and loss (Li et al., "A domain-specific perceptual metric via contrastive
self-supervised representation", sections III.B-C, appendices A-B).

* ``FeatureExtractor``: a frozen network and the L feature maps it yields, shallow to deep
  ([B, C_l, *grid_l]); grey-scale inputs are repeated to the channels the network reads (appendix B).
* ``coper_distance``: CoPer metric (III.B, Fig. 2a; LPIPS eq. 1): unit-normalise each layer over
  channels, scale channel-wise by w_l, squared l2 over channels, spatial mean, sum over layers.
* ``load_extractor``: a suite checkpoint (``<cache>/pretrained/<key>.pt`` from ``benchmark.train``)
  or ``"rand:<backbone>"`` (the paper's randomly initialised "rand." baselines, Tables II-III).
* ``CoPerLoss``: eqs. 3-4, per target channel, on the frozen network's ReLU features (raw, energy- or unit-normalised).
* ``learn_weights``: LPIPS's 2AFC ranking training of w_l (LPIPS section 3: a small network G maps
  (d0, d1) to the probability that p1 is preferred; binary cross-entropy against h; w_l >= 0).

Which maps each network gives (``FEATURE_LAYERS``):

* ``resnet_unet``: the timm ResNet's five ``features_only`` maps (stem ReLU, layer1..layer4 outputs:
  all post-ReLU, strides 2..32);
* ``vgg16_unet``: VGG-16's five ReLU maps before each max-pool (strides 1..16): relu1_2, relu2_2, relu3_3, relu4_3,
  relu5_3, exactly LPIPS's VGG layers (CoPer Table II's VGG is VGG-16); the encoder's sixth map (the last max-pool)
  is left out;
* ``vgg_unet``: the same five maps of VGG11 (TernausNet's encoder, the LADP paper's network);
* ``unet2d``: BasicUNet's five encoder maps (MONAI's LeakyReLU(0.1) activations, not ReLU);
* ``vit`` (``rand:vit`` only): a 2D timm ``VisionTransformer`` (appendix A: ViT-S/16 at the paper
  size; ``BackboneSize.vit_*`` otherwise). The patch tokens after each of five evenly spaced blocks
  (all blocks when there are <= 5) are reshaped from [N, M] to [M, h, w] (the "Patch Reshaping
  Layer" of Fig. 5); prefix (class) tokens are dropped. Tokens are not ReLU activations. The suite's
  ``vit`` backbone is a 3D series-token ViT and its checkpoints are not read here (see README).
"""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import PAPER_SIZE, SMOKE_SIZE, BackboneSize, build_backbone
from benchmark.errors import BenchmarkInputError

EPS = 1e-10  # lpips.normalize_tensor's eps
SIZES = {"paper": PAPER_SIZE, "smoke": SMOKE_SIZE}
CNN_BACKBONES = ("resnet_unet", "vgg16_unet", "vgg_unet", "unet2d")
FEATURE_LAYERS = {"resnet_unet": (0, 1, 2, 3, 4), "vgg16_unet": (0, 1, 2, 3, 4), "vgg_unet": (0, 1, 2, 3, 4), "unet2d": (0, 1, 2, 3, 4)}
RELU_FEATURES = {"resnet_unet": True, "vgg16_unet": True, "vgg_unet": True, "unet2d": False, "vit": False}


class FeatureExtractor(nn.Module):
    """A frozen network and ``features(x) -> [L x [B, C_l, *grid_l]]``, always in eval mode.

    ``in_channels``: what the network reads; a one-channel input is repeated to it (CoPer appendix B:
    "we stack [each grey-scale slice] with its two copies to be a three-channel image"). Gradients
    still flow to the input (``CoPerLoss``), never into the network's parameters.
    """

    def __init__(self, network: nn.Module, features: Callable[[torch.Tensor], Sequence[torch.Tensor]], *, in_channels: int,
                 name: str, relu: bool, spatial_dims: int = 2) -> None:
        super().__init__()
        self.network = network
        self._features = features
        self.in_channels = in_channels
        self.name = name
        self.relu = relu  # True: the maps are ReLU activations (what CoPer eq. 3 asks for)
        self.spatial_dims = spatial_dims
        for p in self.network.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """Stays in eval mode (BatchNorm statistics and dropout of a frozen network never change)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, c, *spatial] (c = 1 or ``in_channels``) -> [L x [B, C_l, *grid_l]], shallow to deep."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(f"{self.name}: expected a [B, C, {'H, W' if self.spatial_dims == 2 else 'D, H, W'}] tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            if x.shape[1] != 1:
                raise ValueError(f"{self.name}: the network reads {self.in_channels} channel(s), got {x.shape[1]} (one grey channel is repeated)")
            x = x.expand(-1, self.in_channels, *x.shape[2:])  # appendix B: grey -> copies
        return list(self._features(x))

    @torch.no_grad()
    def channels(self, spatial: Sequence[int] = (64, 64)) -> list[int]:
        """C_l of every layer (one forward of a zero image of ``spatial`` size)."""
        param = next(self.network.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        return [f.shape[1] for f in self(torch.zeros(1, 1, *spatial, device=device))]


# ---- the metric ------------------------------------------------------------------------------------
def unit_normalize(feat: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """[B, C, *grid] / (its l2 norm over C + eps): ``lpips.normalize_tensor``."""
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def channel_distances(f0: Sequence[torch.Tensor], f1: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, the spatial mean of (ŷ0 - ŷ1)^2 per channel: [L x [B, C_l]] (d is linear in w_l^2 of these)."""
    out = []
    for a, b in zip(f0, f1, strict=True):
        diff = (unit_normalize(a) - unit_normalize(b)).pow(2)  # [B, C_l, *grid]
        out.append(diff.flatten(2).mean(dim=2))
    return out


def combine(per_channel: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """sum_l sum_c w_lc^2 · D_lc -> [B] (``channel_distances`` D, weights w_l [C_l] or None = ones)."""
    total = 0
    for layer, dist in enumerate(per_channel):
        if weights is not None:
            w = weights[layer].to(dist)
            if w.shape != dist.shape[1:]:
                raise ValueError(f"weights[{layer}] has shape {tuple(w.shape)}, layer {layer} has {dist.shape[1]} channels")
            dist = dist * w.pow(2)
        total = total + dist.sum(dim=1)
    return total


def coper_distance(x0: torch.Tensor, x1: torch.Tensor, extractor: FeatureExtractor, weights: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """CoPer metric (III.B, Fig. 2a; LPIPS eq. 1): d = sum_l mean_hw || w_l ⊙ (ŷ0_hw^l - ŷ1_hw^l) ||^2 -> [B].

    x0, x1 [B, c, *spatial] with the same intensity scaling (no normalisation here). ``weights``: one
    [C_l] vector per layer, None = ones (then d equals ``lpips.LPIPS(lpips=False)`` on the same features).
    The weights scale the difference before squaring, as the LPIPS and CoPer papers write it; LPIPS's
    code applies its 1x1 ``NetLinLayer`` to the squared difference, i.e. its weights are our w_l^2.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"coper_distance: images differ in shape, {tuple(x0.shape)} vs {tuple(x1.shape)}")
    return combine(channel_distances(extractor(x0), extractor(x1)), weights)


# ---- networks ----------------------------------------------------------------------------------------
def cnn_extractor(backbone: nn.Module, name: str, in_channels: int) -> FeatureExtractor:
    layers = FEATURE_LAYERS[name]

    def features(x: torch.Tensor) -> list[torch.Tensor]:
        maps = backbone.encoder_features(x)
        return [maps[i] for i in layers]

    return FeatureExtractor(backbone, features, in_channels=in_channels, name=name, relu=RELU_FEATURES[name])


def vit_blocks(depth: int, n: int = 5) -> tuple[int, ...]:
    """Indices of the ``n`` evenly spaced blocks whose tokens are read (the last block always; all when depth <= n)."""
    if depth <= n:
        return tuple(range(depth))
    return tuple(sorted({round(i * (depth - 1) / (n - 1)) for i in range(n)}))


def _vit_extractor(size: BackboneSize, in_channels: int) -> FeatureExtractor:
    """A randomly initialised 2D timm ViT; patch tokens of five blocks reshaped to [M, h, w] (appendix A, Fig. 5)."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=224, patch_size=size.vit_patch, in_chans=in_channels, num_classes=0, embed_dim=size.vit_dim,
                            depth=size.vit_depth, num_heads=size.vit_heads, dynamic_img_size=True)
    picks = set(vit_blocks(len(vit.blocks)))

    def features(x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2] // size.vit_patch, x.shape[-1] // size.vit_patch
        if x.shape[-2] % size.vit_patch or x.shape[-1] % size.vit_patch:
            raise ValueError(f"vit: image sides {tuple(x.shape[-2:])} must be multiples of the patch size {size.vit_patch}")
        t = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))  # [B, prefix + h*w, M]
        out = []
        for i, block in enumerate(vit.blocks):
            t = block(t)
            if i in picks:
                tokens = t[:, vit.num_prefix_tokens:]  # [B, h*w, M]
                out.append(tokens.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w))  # Patch Reshaping Layer
        return out

    return FeatureExtractor(vit, features, in_channels=in_channels, name="vit", relu=False)


def random_extractor(backbone: str, *, size: BackboneSize | str = "paper", in_channels: int = 3, seed: int = 0) -> FeatureExtractor:
    """A randomly initialised network (the paper's "rand." baselines), seeded; the global RNG is untouched."""
    size = resolve_size(size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if backbone == "vit":  # paper size: appendix A's ViT-S/16 (384 wide, 6 heads, 12 blocks)
            return _vit_extractor(replace(size, vit_dim=384, vit_heads=6) if size == PAPER_SIZE else size, in_channels)
        if backbone not in CNN_BACKBONES:
            raise BenchmarkInputError(f"rand:{backbone}: no CoPer features for this backbone; expected one of "
                                      f"{', '.join(('rand:' + b for b in (*CNN_BACKBONES, 'vit')))}")
        net = build_backbone(backbone, in_channels=in_channels, out_channels=1, size=size, roi=(64, 64))
    return cnn_extractor(net, backbone, in_channels)


def resolve_size(size: BackboneSize | str | dict) -> BackboneSize:
    if isinstance(size, BackboneSize):
        return size
    if isinstance(size, dict):  # a Job's backbone_size as JSON
        names = {f.name for f in fields(BackboneSize)}
        return BackboneSize(**{k: tuple(v) if isinstance(v, list) else v for k, v in size.items() if k in names})
    if size not in SIZES:
        raise BenchmarkInputError(f"size {size!r}: expected one of {', '.join(SIZES)}")
    return SIZES[size]


def load_extractor(spec: str | Path, *, size: BackboneSize | str = "paper", seed: int = 0) -> FeatureExtractor:
    """``"rand:<backbone>"`` (random weights, ``size``, 3 input channels) or a suite checkpoint path.

    A checkpoint is what ``benchmark.train`` writes at ``<cache>/pretrained/<key>.pt``:
    ``{"backbone": state_dict, "job": {"backbone", "backbone_size", "roi", "pretrain_channels", ...}, ...}``;
    the network is rebuilt from the Job's fields and loaded strictly.
    """
    text = str(spec)
    if text.startswith("rand:"):
        return random_extractor(text[len("rand:"):], size=size, seed=seed)
    path = Path(text).expanduser()
    if not path.is_file():
        raise BenchmarkInputError(f"{path}: no such checkpoint; expected rand:<backbone> or a file <cache>/pretrained/<key>.pt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise BenchmarkInputError(f"{path}: could not be read as a torch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or "backbone" not in ckpt or "job" not in ckpt:
        raise BenchmarkInputError(f"{path}: expected a suite checkpoint, a dict with 'backbone' (state dict) and 'job' (the Job as a dict)")
    job = ckpt["job"]
    missing = [k for k in ("backbone", "backbone_size", "roi", "pretrain_channels") if k not in job]
    if missing:
        raise BenchmarkInputError(f"{path}: the checkpoint's 'job' lacks {', '.join(missing)}")
    name = job["backbone"]
    if name not in CNN_BACKBONES:
        raise BenchmarkInputError(f"{path}: backbone {name!r} has no CoPer features here; expected one of {', '.join(CNN_BACKBONES)} "
                                  "(ViT features: rand:vit)")
    in_ch, out_ch = (int(c) for c in job["pretrain_channels"])
    net = build_backbone(name, in_channels=in_ch, out_channels=out_ch, size=resolve_size(job["backbone_size"]), roi=tuple(job["roi"]))
    try:
        net.load_state_dict(ckpt["backbone"], strict=True)
    except RuntimeError as exc:
        raise BenchmarkInputError(f"{path}: the weights do not fit a {name} of the size its job states ({exc})") from None
    extractor = cnn_extractor(net, name, in_ch)
    extractor.name = f"{job.get('method', '?')}-{name}"
    return extractor


# ---- the loss ----------------------------------------------------------------------------------------------
FEATURE_NORMS = ("energy", "unit", "none")  # CoPerLoss's readings of eq. 3 (its docstring); the method's Config picks one


class CoPerLoss(nn.Module):
    """CoPer loss (III.C, eqs. 3-4): (1 / m n) sum_j sum_i L_ij(y_j, ŷ_j), the i-th of the network's n feature maps φ_ij of
    the j-th of m target channels, each channel through the frozen network on its own (as grey, repeated to the
    network's channels, appendix B). Per layer, by ``feature_norm`` (``FEATURE_NORMS``):

    * ``none``: eq. 3 as printed, 1/(C_i H_i W_i)·||φ_ij(y_j) − φ_ij(ŷ_j)||² on the raw activations (Johnson et al.'s
      feature reconstruction loss, CoPer ref. [5]), averaged over the batch. Its size is the network's activation scale
      squared: on the smoke profile's SwAV-trained VGG-16 (no BatchNorm) relu5_3 has an RMS about 100 times relu1_2's,
      so this term is hundreds of times the L1 term at any λ1 the paper searched;
    * ``energy``: the same squared distance divided by the layer's mean φ_ij(y_j)² over the batch (the target's feature
      energy, no gradient): eq. 3 on the function-equivalent network (ReLU layers are positively homogeneous) whose
      every layer is rescaled to unit RMS on the targets. It keeps eq. 3's distance on the raw ReLU activations and
      removes only the scale that a network's training happened to give each layer;
    * ``unit``: the CoPer metric's per-layer distance (III.B, Fig. 2a; LPIPS eq. 1, weights one): features unit-normalised
      over channels, squared difference summed over channels, averaged over space and batch (``coper_distance`` / n).

    The target's features carry no gradient; the prediction's carry gradients to the generator, never to the network.
    The full generator loss (eq. 5) weighs ``lambda1 * L1 + (1 - lambda1) * CoPerLoss`` against the adversarial term
    (``benchmark/synthesis/pix2pix.py``); which reading, and why the default, is ``CoPerLossConfig.feature_norm``
    (``benchmark/methods/synthesis_losses.py``). The images are on the scale the network was trained on (the caller's job).
    """

    def __init__(self, extractor: FeatureExtractor, *, feature_norm: str) -> None:
        super().__init__()
        if feature_norm not in FEATURE_NORMS:
            raise ValueError(f"CoPerLoss: feature_norm must be one of {', '.join(FEATURE_NORMS)}, got {feature_norm!r}")
        self.extractor = extractor
        self.feature_norm = feature_norm

    def layer_term(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """One layer's term, fake φ(ŷ) and real φ(y) [B, C, *grid] -> scalar (the batch mean of eq. 3 under ``feature_norm``)."""
        if self.feature_norm == "unit":
            return (unit_normalize(fake) - unit_normalize(real)).pow(2).sum(dim=1).mean()
        raw = F.mse_loss(fake, real)  # mean over B, C_i, H_i, W_i: eq. 3 averaged over the batch
        if self.feature_norm == "none":
            return raw
        return raw / real.pow(2).mean().clamp_min(EPS)  # energy: the target's mean squared activation of this layer

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """prediction ŷ, target y [B, m, H, W] -> scalar."""
        if prediction.shape != target.shape:
            raise ValueError(f"CoPerLoss: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        m = prediction.shape[1]
        total, n = prediction.new_zeros(()), 0
        for j in range(m):
            fake = self.extractor(prediction[:, j:j + 1])
            with torch.no_grad():
                real = self.extractor(target[:, j:j + 1])
            n = len(fake)
            for a, b in zip(fake, real, strict=True):
                total = total + self.layer_term(a, b)
        return total / (m * n)


# ---- learned weights (LPIPS 2AFC ranking) --------------------------------------------------------------------
class RankingHead(nn.Module):
    """LPIPS's ``Dist2LogitLayer``: (d0, d1) -> P(p1 judged closer); inputs d0, d1, d0 - d1, d0 / d1, d1 / d0."""

    def __init__(self, hidden: int = 32, eps: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.net = nn.Sequential(nn.Linear(5, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, d0: torch.Tensor, d1: torch.Tensor) -> torch.Tensor:  # [B], [B] -> logits [B]
        x = torch.stack([d0, d1, d0 - d1, d0 / (d1 + self.eps), d1 / (d0 + self.eps)], dim=1)
        return self.net(x).squeeze(1)


def learn_weights(triplets, extractor: FeatureExtractor, *, steps: int = 200, lr: float = 1e-3, batch_size: int = 32,
                  seed: int = 0) -> list[torch.Tensor]:
    """Learn w_l (>= 0, start at ones) by LPIPS's 2AFC ranking: BCE(G(d0, d1), h) with G a ``RankingHead``.

    ``triplets``: ``twoafc.Triplet`` objects (ref, p0, p1 images [c, H, W]; h = fraction preferring p1).
    The network is frozen, so the per-channel distances of every triplet are computed once and the
    steps only touch w and G (LPIPS trains with Adam, beta1 0.5, and clamps w >= 0 after each step).
    Returns one [C_l] tensor per layer, for ``coper_distance(..., weights=)``.
    """
    triplets = list(triplets)
    if not triplets:
        raise ValueError("learn_weights: no triplets")
    d0, d1 = triplet_channel_distances(triplets, extractor)
    h = torch.tensor([t.h for t in triplets], dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = RankingHead()
    weights = [nn.Parameter(torch.ones(d.shape[1])) for d in d0]
    opt = torch.optim.Adam([*weights, *head.parameters()], lr=lr, betas=(0.5, 0.999))
    for _ in range(steps):
        idx = torch.randperm(len(triplets), generator=gen)[:batch_size]
        dist0 = combine([d[idx] for d in d0], weights)
        dist1 = combine([d[idx] for d in d1], weights)
        loss = F.binary_cross_entropy_with_logits(head(dist0, dist1), h[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for w in weights:
                w.clamp_(min=0)
    return [w.detach().clone() for w in weights]


@torch.no_grad()
def triplet_channel_distances(triplets, extractor: FeatureExtractor, *, batch_size: int = 16) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-channel distances (``channel_distances``) of (ref, p0) and (ref, p1) for every triplet: two [L x [T, C_l]]."""
    param = next(extractor.network.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    out0, out1 = [], []
    for start in range(0, len(triplets), batch_size):
        chunk = triplets[start:start + batch_size]
        ref, p0, p1 = (torch.stack([torch.as_tensor(getattr(t, k)) for t in chunk]).float().to(device) for k in ("ref", "p0", "p1"))
        fr = extractor(ref)
        out0.append(channel_distances(fr, extractor(p0)))
        out1.append(channel_distances(fr, extractor(p1)))
    cat = lambda parts: [torch.cat([p[layer] for p in parts]).cpu() for layer in range(len(parts[0]))]  # noqa: E731
    return cat(out0), cat(out1)


def triplet_distances(triplets, extractor: FeatureExtractor, weights: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(d0, d1) [T]: CoPer distances of every triplet's p0 and p1 to its reference."""
    d0, d1 = triplet_channel_distances(list(triplets), extractor)
    return combine(d0, weights), combine(d1, weights)
