"""Reconstruction losses and batch-wide (contrastive / clustering) losses, 2D and 3D alike.

Batch-wide losses run over the GLOBAL batch under data parallelism through the gathers of
``benchmark.blocks.distributed`` (identities in one process).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmark.blocks.distributed import all_reduce_sum, gather_no_grad, gather_with_grad, world_size


# ---- reconstruction --------------------------------------------------------------------------------
def l1_plus_l2(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error + root-mean-square error per image, averaged over the batch.

    The reconstruction loss of the Models-Genesis-style baselines (``blocks.pretexts.reconstruction``).
    NOT the SI paper's eq. 4 weighting: MAE + RMSE = ‖d‖₁/n + ‖d‖₂/√n gives the L2 term √n times the
    weight eq. 4 gives it relative to L1; source identification uses ``source_identification_loss``.
    """
    diff = (prediction - target).flatten(1)
    return (diff.abs().mean(dim=1) + diff.pow(2).mean(dim=1).sqrt()).mean()


def source_identification_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SI paper eq. 4: (‖s − f‖₁ + ‖s − f‖₂) per image, both norms divided by n, averaged over the batch.

    prediction/target [B, C, *spatial]; one image = all its channels and voxels (n values). Eq. 4 is a sum
    of the two norms; dividing BOTH by the same n (voxels per image) keeps the paper's L1:L2 ratio exactly
    (‖d‖₁ : ‖d‖₂) while making the loss a per-voxel quantity, so SGD at the paper's lr 1e-2 does not see
    a loss that grows with the crop size. (Eq. 4 averages over the Ñ reconstructed sources; SI
    reconstructs only the target, Ñ = 1 output.)
    """
    diff = (prediction - target).flatten(1)  # [B, n]
    return ((diff.abs().sum(dim=1) + diff.pow(2).sum(dim=1).sqrt()) / diff.shape[1]).mean()


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CSM eq. 2 / MAE: mean squared error over the hidden tokens only. prediction/target [..., P], mask [...] bool."""
    per_token = (prediction - target).pow(2).mean(dim=-1)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SimMIM's loss: mean |prediction − target| over the masked voxels (mask [B, 1, *spatial], every channel)."""
    mask = mask.expand_as(target).to(prediction.dtype)
    return ((prediction - target).abs() * mask).sum() / mask.sum().clamp(min=1.0)


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE norm_pix_loss target: (p − mean) / sqrt(var + eps) per patch over its voxels [..., P] (unbiased var, as in MAE)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


# ---- contrastive -----------------------------------------------------------------------------------
TEMPERATURE_READINGS = ("divide", "exp")  # how eq. 3's t scales the logits: cos / t, or cos · exp(t) as printed


def cmcl_logit_scale(temperature: float, *, reading: str = "divide") -> float:
    """The factor DAE eq. 3 puts on the cosine similarities: 1 / t ("divide", the default) or exp(t) ("exp").

    Eq. 3 prints z_sim = z_i z_iᵀ · exp(t) with "t ... set to 0.07". Taken literally that is a factor
    exp(0.07) = 1.07: logits within ±1.07, a softmax over the batch that is almost flat whatever the features, so
    the term barely contrasts anything. The equation is "inspired from" CLIP (Radford et al. 2021), whose code
    multiplies by exp(s) with s a learnable log-scale initialised to log(1 / 0.07): exp(s) = 1 / 0.07 = 14.3. The
    DAE authors' pretraining code (research-contributions DAE/Pretrain_full_contrast/models/simmim_advanced.py,
    ``ConLoss``, SupCon's loss) divides the similarities by temperature 0.07. Both point to 1 / t, which is what
    produced the published numbers: "divide" is the default, "exp" the equation as printed (an ablation).
    """
    if temperature <= 0:
        raise ValueError(f"CMCL temperature must be > 0, got {temperature}")
    if reading == "divide":
        return 1.0 / temperature
    if reading == "exp":
        return math.exp(temperature)
    raise ValueError(f"CMCL temperature reading {reading!r}; expected one of {', '.join(TEMPERATURE_READINGS)}")


def cross_modal_contrastive_loss(features: torch.Tensor, modality: torch.Tensor, *, temperature: float,
                                 reading: str = "divide") -> torch.Tensor:
    """DAE's CMCL without its weight α (DAE eq. 3-4): symmetric cross-entropy over the batch similarity matrix.

    features [B, D] (any scale; L2-normalised here, "cosine similarity" in the text), modality [B]
    integer metadata. z_sim = z zᵀ · s with s = ``cmcl_logit_scale(temperature, reading=reading)`` (1 / t by
    default; ``reading="exp"``: exp(t) as eq. 3 is printed, see there why it is not the default); the self-pair
    is excluded (it is trivially the most similar), and the target of row i spreads over the other samples of the
    same modality (z_label, several positives per row unlike CLIP's one). CE is taken along rows and along
    columns ("applied across each axis") and averaged. Rows without a positive are skipped;
    a batch with a single modality, or no two samples of one, has no contrast: the loss is 0.

    Computed in fp32 whatever the autocast context (``--precision bf16|fp16``): the DAE authors train with AMP off
    because this term goes NaN in half precision (logits up to 1/t = 14 through exp and log-softmax).
    """
    scale = cmcl_logit_scale(temperature, reading=reading)
    with torch.autocast(device_type=features.device.type, enabled=False):
        return _cross_modal_contrastive_fp32(features.float(), modality, scale=scale)


def _cross_modal_contrastive_fp32(features: torch.Tensor, modality: torch.Tensor, *, scale: float) -> torch.Tensor:
    z = F.normalize(features, dim=1)
    logits = z @ z.T * scale
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive = (modality[:, None] == modality[None, :]) & ~eye
    has_positive = positive.any(dim=1)
    has_negative = (~positive & ~eye).any(dim=1)
    rows = has_positive & has_negative
    if not rows.any():
        return features.sum() * 0.0  # keeps the graph (DDP expects every parameter used)
    target = positive.float() / positive.sum(dim=1, keepdim=True).clamp(min=1)
    logits = logits.masked_fill(eye, float("-inf"))
    per_row = -(target * logits.log_softmax(dim=1).masked_fill(eye, 0.0)).sum(dim=1)
    per_col = -(target.T * logits.T.log_softmax(dim=1).masked_fill(eye, 0.0)).sum(dim=1)
    return 0.5 * (per_row[rows].mean() + per_col[rows].mean())


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """NT-Xent (Chen et al. 2020; Tang et al. 3.2) of two views z1, z2 [N, D], row i of each a positive pair.

    The 2N embeddings are L2-normalised; each one's positive is its other view and its negatives
    are the remaining 2N - 2; the loss is the mean over the 2N anchors of
    -log(exp(s_pos / τ) / Σ_{k≠anchor} exp(s_k / τ)) (the reference ``Contrast``).
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, D]
    self_pair = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_pair, float("-inf"))  # an anchor is not its own negative
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positive)


def global_nt_xent(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """NT-Xent over the batch of ALL workers: negatives come from every worker's samples.

    Every worker computes the same global loss; ``gather_with_grad`` sums the gradients that
    reach each worker's rows, and DDP's gradient averaging then gives the gradient of that loss,
    so W workers with batch B/W train like one worker with batch B.
    """
    return nt_xent(gather_with_grad(z1), gather_with_grad(z2), temperature=temperature)


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam eq. 1 with stop-gradient (eq. 3), per sample: D(p_i, sg(z_i)) = -cos(p_i, z_i); p, z [b, d] -> [b]."""
    return -F.cosine_similarity(p, z.detach(), dim=1)


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimSiam eq. 4: D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2, mean over every worker's samples; -1 when p matches z."""
    return gather_with_grad(0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)).mean()


# ---- clustering (SwAV) -------------------------------------------------------------------------------
@torch.no_grad()
def sinkhorn(scores: torch.Tensor, *, epsilon: float, iterations: int) -> torch.Tensor:
    """SwAV section 3.1 (Sinkhorn-Knopp): scores [b, K] -> codes Q [b, K], each row sums to one.

    Q = diag(u) exp(C^T Z / ε) diag(v) with equal total mass per prototype (1/K) and per sample
    (1/N) over the N samples of ALL workers; rows are rescaled by N at the end. Runs in float64
    after subtracting the global maximum score (the same on every worker, so it cancels).
    """
    s = scores.detach().double()
    top = gather_no_grad(s.max().reshape(1)).max()
    q = torch.exp((s - top) / epsilon).t()  # [K, b]
    k, n = q.shape[0], q.shape[1] * world_size()
    q = q / all_reduce_sum(q.sum())
    for _ in range(iterations):
        q = q / (all_reduce_sum(q.sum(dim=1, keepdim=True)) * k)  # every prototype gets 1/K of the mass
        q = q / (q.sum(dim=0, keepdim=True) * n)  # every sample 1/N
    return (q * n).t().to(scores.dtype)


def swav_loss(scores: torch.Tensor, *, n_assign: int, temperature: float, epsilon: float, iterations: int) -> torch.Tensor:
    """Swapped prediction with multi-crop (SwAV eq. 1-2, section 3.2). scores [V, b, K]: V views of b samples vs K prototypes.

    The first ``n_assign`` views (global crops) get codes; every other view predicts each code with
    softmax(scores / τ). Mean over predicting views and coded views, then over the samples of
    every worker.
    """
    v = scores.shape[0]
    log_p = F.log_softmax(scores / temperature, dim=2)  # [V, b, K]
    per_sample = scores.new_zeros(scores.shape[1])  # [b]
    for i in range(n_assign):
        q = sinkhorn(scores[i], epsilon=epsilon, iterations=iterations)  # [b, K], no gradient
        others = [j for j in range(v) if j != i]
        per_sample = per_sample - (q[None] * log_p[others]).sum(dim=2).sum(dim=0) / (v - 1)
    return gather_with_grad(per_sample / n_assign).mean()
