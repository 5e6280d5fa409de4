"""DINO's pieces (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers"): the projection
head, the self-distillation loss with centring and sharpening, the teacher's EMA update and the schedules.

Checked against the authors' code (facebookresearch/dino: ``vision_transformer.DINOHead``, ``main_dino.DINOLoss``,
``utils.cosine_scheduler``); the defaults are that code's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class DINOHead(nn.Module):
    """DINO's projection head (section 3.1, "Network architecture"; ``vision_transformer.DINOHead``): an MLP of
    ``layers`` linear layers (hidden width ``hidden_dim``, GELU, optional BatchNorm) down to ``bottleneck_dim``,
    l2-normalisation, then a weight-normalised linear layer of ``out_dim`` outputs without bias. With
    ``norm_last_layer`` its weight-norm gain g is fixed at 1 (every output is a cosine), as the code's default."""

    def __init__(self, in_dim: int, out_dim: int, *, hidden_dim: int = 2048, bottleneck_dim: int = 256, layers: int = 3,
                 use_bn: bool = False, norm_last_layer: bool = True) -> None:
        super().__init__()
        layers = max(layers, 1)
        if layers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            parts: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            for _ in range(layers - 2):
                parts += ([nn.BatchNorm1d(hidden_dim)] if use_bn else []) + [nn.GELU(), nn.Linear(hidden_dim, hidden_dim)]
            parts += ([nn.BatchNorm1d(hidden_dim)] if use_bn else []) + [nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim)]
            self.mlp = nn.Sequential(*parts)
        for m in self.mlp.modules():  # the code's _init_weights: trunc-normal std 0.02, zero bias (not the last layer)
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)  # g
        self.last_layer.parametrizations.weight.original0.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor, *, freeze_last_layer: bool = False) -> torch.Tensor:
        """x [N, in_dim] -> logits [N, out_dim]. ``freeze_last_layer``: no gradient reaches the last layer (the code's
        ``cancel_gradients_last_layer`` during the first epoch)."""
        z = F.normalize(self.mlp(x), dim=-1, p=2)
        weight = self.last_layer.weight  # g · v / ‖v‖, rows normalised
        return F.linear(z, weight.detach() if freeze_last_layer else weight)


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, *, center: torch.Tensor, n_global: int, student_temp: float,
              teacher_temp: float) -> torch.Tensor:
    """DINO's loss (section 3.1, eq. 2-3; ``main_dino.DINOLoss.forward``).

    student [V·B, K]: the logits of V views (the ``n_global`` global ones first), view-major; teacher [n_global·B, K]:
    the teacher's logits of the global views. The teacher's distribution is centred and sharpened,
    P_t = softmax((g_t − c) / τ_t), the student's P_s = softmax(g_s / τ_s), and the loss is the mean over every
    (teacher view, student view) pair of DIFFERENT views of the batch-mean cross-entropy −Σ P_t log P_s. No gradient
    reaches the teacher.
    """
    batch = teacher.shape[0] // n_global
    views = student.shape[0] // max(batch, 1)
    if batch * n_global != teacher.shape[0] or views * batch != student.shape[0] or views < max(2, n_global):
        raise ValueError(f"dino_loss: teacher rows {teacher.shape[0]} must be {n_global} global views of B samples and student rows "
                         f"{student.shape[0]} V >= {max(2, n_global)} views of the same B")
    log_p = F.log_softmax(student / student_temp, dim=-1).chunk(views)
    targets = F.softmax((teacher - center) / teacher_temp, dim=-1).detach().chunk(n_global)
    terms = [torch.sum(-q * log_p[v], dim=-1).mean() for i, q in enumerate(targets) for v in range(views) if v != i]
    return sum(terms) / len(terms)


def teacher_momentum(step: int, *, total: int | None, base: float) -> float:
    """The teacher's EMA momentum at ``step`` (section 3.1: "λ following a cosine schedule from 0.996 to 1 during
    training"; ``utils.cosine_scheduler(base, 1, ...)``): 1 − (1 − base)·(1 + cos(π·step / total)) / 2. Without a
    known length (``total`` None) it stays at ``base``."""
    if total is None:
        return base
    return 1.0 - (1.0 - base) * (1.0 + math.cos(math.pi * step / total)) / 2.0


def teacher_temperature(step: int, *, steps_per_epoch: float | None, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """τ_t at ``step`` (``DINOLoss.teacher_temp_schedule``): linear from ``warmup_temp`` to ``temp`` over the first
    ``warmup_epochs`` epochs (one value per epoch, ``np.linspace``), then ``temp``. A run without epochs
    (``steps_per_epoch`` None: a recipe counted in steps) or without warm-up uses ``temp``."""
    if not warmup_epochs or steps_per_epoch is None:
        return temp
    epoch = int(step // steps_per_epoch)
    if epoch >= warmup_epochs:
        return temp
    return warmup_temp + (temp - warmup_temp) * (epoch / (warmup_epochs - 1) if warmup_epochs > 1 else 0.0)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, *, momentum: float) -> None:
    """teacher ← m·teacher + (1 − m)·student, parameter by parameter (section 3.1; ``main_dino.train_one_epoch``);
    the two modules must have the same parameters. Buffers stay the teacher's own, as in DINO's code."""
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        raise ValueError("ema_update: teacher and student have different parameters")
    for name, p in t_params.items():
        p.mul_(momentum).add_(s_params[name].detach(), alpha=1.0 - momentum)
